"""Names Google refuses: `deployctl plan` fails offline naming the file, the key and the limit, and the twin
refuses the same names with Cloud Run's error (through the real client library)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from deployctl.errors import ConfigError
from deployctl.targets.gcp.synth import synthesize
from tests.cli_runner import RunCli
from tests.gcp.conftest import IMAGE, IMAGE2, Cloud
from tests.infra.conftest import RELEASE, stack_with

ROOT = Path(__file__).resolve().parents[2]
PARENT = "projects/example-staging/locations/europe-central2"
_REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def _project(tmp_path: Path, service: str) -> Path:
    """The repository's Pulumi.yaml and stacks, the app's one service renamed to *service* in the shared
    definition and in staging's overrides of it."""
    shutil.copytree(ROOT / "stacks", tmp_path / "stacks")
    shared = (ROOT / "Pulumi.yaml").read_text()
    (tmp_path / "Pulumi.yaml").write_text(shared.replace("\n      api:\n", f"\n      {service}:\n", 1))
    path = tmp_path / "stacks" / "Pulumi.staging.yaml"
    path.write_text(path.read_text().replace("\n    api:\n", f"\n    {service}:\n", 1))
    return tmp_path


def test_plan_refuses_a_service_id_of_50_characters(tmp_path: Path, run_cli: RunCli) -> None:
    key = "p" * 42  # staging-ppp…: 50 characters, one more than CreateServiceRequest.service_id allows
    result = run_cli(["plan", "staging"], _project(tmp_path, key))
    assert result.exit_code != 0
    assert result.output.splitlines()[0] == (
        f"Error: stacks/Pulumi.staging.yaml: deployctl:services.{key}: Cloud Run service name 'staging-{key}' has "
        "50 characters; Cloud Run allows fewer than 50")


def test_plan_refuses_a_service_name_the_candidate_tag_does_not_fit_beside(tmp_path: Path, run_cli: RunCli) -> None:
    key = "p" * 30  # staging-ppp…: 38 characters, + "candidate" (9) = 47 > 46
    result = run_cli(["plan", "staging"], _project(tmp_path, key))
    assert result.exit_code != 0
    assert result.output.splitlines()[0] == (
        f"Error: stacks/Pulumi.staging.yaml: deployctl:services.{key}: traffic tag 'candidate' and service name "
        f"'staging-{key}' together have 47 characters; Cloud Run allows 46")


def test_plan_accepts_the_longest_name_the_candidate_tag_fits_beside(tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli(["plan", "staging"], _project(tmp_path, "p" * 29))  # 37 + 9 = 46
    assert result.exit_code == 0, result.output


def test_a_handed_revision_of_64_characters_is_refused_before_any_resource() -> None:
    revision = "staging-api-" + "r" * 52

    def handed(config: dict[str, Any]) -> None:
        config[RELEASE] = {"revisions": {"api": revision}}

    with pytest.raises(ConfigError) as exc:
        synthesize(stack_with("staging", handed))
    assert exc.value.message == (f"DEPLOYCTL_PULUMI_RELEASE: revisions.api: revision name {revision!r} has 64 "
                                 "characters; Cloud Run allows 63")


# -- the twin ---------------------------------------------------------------------------------------------


def _client(cloud: Cloud) -> run_v2.ServicesClient:
    return run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=cloud.grpc.channel(None)))


def _template(revision: str, image: str = IMAGE) -> run_v2.RevisionTemplate:
    return run_v2.RevisionTemplate(revision=revision, containers=[run_v2.Container(image=image)])


def _to(revision: str, percent: int, tag: str = "") -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=_REVISION, revision=revision, percent=percent, tag=tag)


def test_the_twin_refuses_a_service_id_of_50_characters(cloud: Cloud) -> None:
    service_id = "s" * 50
    service = run_v2.Service(template=_template(f"{service_id[:49]}-r1"), traffic=[_to(f"{service_id[:49]}-r1", 100)])
    with pytest.raises(gexc.InvalidArgument) as refused:
        _client(cloud).create_service(parent=PARENT, service=service, service_id=service_id)
    assert refused.value.message == f"service_id '{service_id}' must contain fewer than 50 characters."
    assert not cloud.run.services
    created = _client(cloud).create_service(parent=PARENT, service=service, service_id=service_id[:49]).result()
    assert created.name == f"{PARENT}/services/{service_id[:49]}"


def test_the_twin_refuses_a_tag_that_does_not_fit_beside_the_service_name(cloud: Cloud) -> None:
    name = f"{PARENT}/services/staging-" + "p" * 30  # 38 characters
    cloud.run.apply(name, _template("staging-r1"), [_to("staging-r1", 100)])
    service = _client(cloud).get_service(name=name)
    service.template = _template("staging-r2", IMAGE2)
    service.traffic[:] = [_to("staging-r1", 100), _to("staging-r2", 0, "candidate")]
    with pytest.raises(gexc.InvalidArgument) as refused:
        _client(cloud).update_service(service=service)
    assert refused.value.message == (
        f"spec.traffic.tag: traffic tag 'candidate' and service name 'staging-{'p' * 30}' together are too long. "
        "Combined traffic tag and service name cannot exceed 46 characters.")
    assert cloud.run.revision_names(name) == ["staging-r1"]  # nothing was made
    service.traffic[:] = [_to("staging-r1", 100), _to("staging-r2", 0, "cand")]  # 4 + 38 = 42
    _client(cloud).update_service(service=service).result()
    assert cloud.run.tags(name) == {"cand": "staging-r2"}


def test_the_twin_refuses_a_revision_name_of_64_characters(cloud: Cloud) -> None:
    name = f"{PARENT}/services/staging-api"
    cloud.run.apply(name, _template("staging-api-r1"), [_to("staging-api-r1", 100)])
    service = _client(cloud).get_service(name=name)
    long = "staging-api-" + "r" * 52
    service.template = _template(long, IMAGE2)
    with pytest.raises(gexc.InvalidArgument) as refused:
        _client(cloud).update_service(service=service)
    assert refused.value.message == (f"template.revision '{long}' must be an RFC 1035 label. Maximum length is 63 "
                                     "characters.")
    assert cloud.run.revision_names(name) == ["staging-api-r1"]
