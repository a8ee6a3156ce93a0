"""Smoke checks: plain HTTP GETs against a revision's own URL or the service URL, with httpx.

Rule: a check passes only on the expected status (and body text when configured); the first failure is
reported with the path and what came back, never with response bodies that could hold secrets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from deployctl.config import SmokeCheck


@dataclass(frozen=True)
class SmokeResult:
    path: str
    ok: bool
    detail: str
    elapsed_s: float


def run_checks(base_url: str, checks: list[SmokeCheck], attempts: int = 3) -> list[SmokeResult]:
    """Run every check against *base_url*; retry a failed check briefly (a cold start is not a failure)."""
    results = []
    with httpx.Client(base_url=base_url.rstrip("/"), follow_redirects=False) as client:
        for check in checks:
            result = _check(client, check)
            for _ in range(attempts - 1):
                if result.ok:
                    break
                time.sleep(0.3)
                result = _check(client, check)
            results.append(result)
    return results


def _check(client: httpx.Client, check: SmokeCheck) -> SmokeResult:
    start = time.monotonic()
    try:
        response = client.get(check.path, timeout=check.timeout_s)
    except httpx.HTTPError as exc:
        return SmokeResult(check.path, False, f"{type(exc).__name__}", time.monotonic() - start)
    elapsed = time.monotonic() - start
    if response.status_code != check.expect_status:
        return SmokeResult(check.path, False, f"HTTP {response.status_code}, expected {check.expect_status}", elapsed)
    if check.body_contains and check.body_contains not in response.text:
        return SmokeResult(check.path, False, f"body lacks {check.body_contains!r}", elapsed)
    return SmokeResult(check.path, True, f"HTTP {response.status_code}", elapsed)


def summary(results: list[SmokeResult]) -> str:
    failed = [r for r in results if not r.ok]
    if not failed:
        return f"{len(results)}/{len(results)} checks passed"
    return "; ".join(f"{r.path}: {r.detail}" for r in failed)
