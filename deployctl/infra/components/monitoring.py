"""Monitoring: an uptime check on a public service's /health, and alerts on its 5xx ratio and p95 latency."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi_gcp import monitoring as mon

from deployctl.config import Monitoring as MonitoringConfig


@dataclass(frozen=True)
class ServiceMonitoringArgs:
    project: str
    service_name: str
    url: pulumi.Output[str]
    config: MonitoringConfig
    health_path: str = "/health"
    uptime: bool = True  # only a public service can be checked from the internet


class ServiceMonitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: ServiceMonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("deployctl:gcp:ServiceMonitoring", name, None, opts)
        parent = pulumi.ResourceOptions(parent=self)
        svc, project = args.service_name, args.project
        if args.uptime:
            mon.UptimeCheckConfig(
                f"{name}-uptime",
                mon.UptimeCheckConfigArgs(
                    project=project,
                    display_name=f"{svc} {args.health_path}",
                    timeout="10s",
                    period="60s",
                    http_check=mon.UptimeCheckConfigHttpCheckArgs(path=args.health_path, port=443, use_ssl=True,
                                                                  validate_ssl=True),
                    monitored_resource=mon.UptimeCheckConfigMonitoredResourceArgs(
                        type="uptime_url",
                        labels={"project_id": project, "host": args.url.apply(_host)},
                    ),
                ),
                opts=parent,
            )
        base = f'resource.type = "cloud_run_revision" AND resource.labels.service_name = "{svc}"'
        requests = f'{base} AND metric.type = "run.googleapis.com/request_count"'
        self._alert(f"{name}-errors", project, f"{svc}: 5xx ratio above {args.config.error_ratio}",
                    mon.AlertPolicyConditionConditionThresholdArgs(
                        filter=f'{requests} AND metric.labels.response_code_class = "5xx"',
                        denominator_filter=requests,
                        aggregations=[_sum("ALIGN_RATE")],
                        denominator_aggregations=[_denominator()],
                        comparison="COMPARISON_GT",
                        threshold_value=args.config.error_ratio,
                        duration="300s",
                    ))
        self._alert(f"{name}-latency", project, f"{svc}: p95 latency above {args.config.latency_p95_ms} ms",
                    mon.AlertPolicyConditionConditionThresholdArgs(
                        filter=f'{base} AND metric.type = "run.googleapis.com/request_latencies"',
                        aggregations=[mon.AlertPolicyConditionConditionThresholdAggregationArgs(
                            alignment_period="60s", per_series_aligner="ALIGN_PERCENTILE_95")],
                        comparison="COMPARISON_GT",
                        threshold_value=args.config.latency_p95_ms,
                        duration="300s",
                    ))
        self.register_outputs({})

    def _alert(self, name: str, project: str, title: str, threshold: mon.AlertPolicyConditionConditionThresholdArgs
               ) -> None:
        mon.AlertPolicy(
            name,
            mon.AlertPolicyArgs(
                project=project,
                display_name=title,
                combiner="OR",
                conditions=[mon.AlertPolicyConditionArgs(display_name=title, condition_threshold=threshold)],
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )


def _sum(aligner: str) -> mon.AlertPolicyConditionConditionThresholdAggregationArgs:
    return mon.AlertPolicyConditionConditionThresholdAggregationArgs(
        alignment_period="60s", per_series_aligner=aligner, cross_series_reducer="REDUCE_SUM"
    )


def _denominator() -> mon.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs:
    return mon.AlertPolicyConditionConditionThresholdDenominatorAggregationArgs(
        alignment_period="60s", per_series_aligner="ALIGN_RATE", cross_series_reducer="REDUCE_SUM"
    )


def _host(url: str) -> str:
    return url.removeprefix("https://").split("/", 1)[0]
