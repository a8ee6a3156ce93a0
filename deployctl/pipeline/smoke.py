"""Smoke checks: HTTP requests against a revision's own URL or the service URL, with httpx.

Rule: a check passes only on the expected status, and on the body text and JSON key/values when they are
configured; the first failure is reported with the method, the path and what came back (a status, a
missing text, the JSON key that differs), never with a response body or a value from it, which could hold
secrets.
"""

from __future__ import annotations

import functools
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from deployctl.config import SmokeCheck


@dataclass(frozen=True)
class SmokeResult:
    path: str
    ok: bool
    detail: str
    elapsed_s: float


def run_checks(base_url: str, checks: list[SmokeCheck], attempts: int = 3,
               auth: dict[str, str] | None = None) -> list[SmokeResult]:
    """Run every check against *base_url*; retry a failed check briefly (a cold start is not a failure).

    *auth* are headers the target adds to every request (an ID token for a private Cloud Run service); a
    check's own headers come on top."""
    results = []
    with httpx.Client(base_url=base_url.rstrip("/"), follow_redirects=False, headers=auth or {},
                      verify=tls()) as client:
        for check in checks:
            result = _check(client, check)
            for _ in range(attempts - 1):
                if result.ok:
                    break
                time.sleep(0.3)
                result = _check(client, check)
            results.append(result)
    return results


@functools.cache
def tls() -> ssl.SSLContext:
    """The verifying TLS context every client of one command shares: httpx makes a new one per client by
    default, loading the CA bundle again (tens of milliseconds each, several times per release)."""
    return httpx.create_ssl_context()


def _check(client: httpx.Client, check: SmokeCheck) -> SmokeResult:
    shown = check.path if check.method == "GET" else f"{check.method} {check.path}"
    start = time.monotonic()
    try:
        response = client.request(check.method, check.path, headers=check.headers, timeout=check.timeout_s)
    except httpx.HTTPError as exc:
        return SmokeResult(shown, False, f"{type(exc).__name__}", time.monotonic() - start)
    elapsed = time.monotonic() - start
    problem = _problem(response, check)
    return SmokeResult(shown, problem is None, problem or f"HTTP {response.status_code}", elapsed)


def _problem(response: httpx.Response, check: SmokeCheck) -> str | None:
    if response.status_code != check.expect_status:
        return f"HTTP {response.status_code}, expected {check.expect_status}"
    if check.body_contains and check.body_contains not in response.text:
        return f"body lacks {check.body_contains!r}"
    if check.expect_json is not None:
        try:
            body = response.json()
        except ValueError:
            return "the body is not JSON"
        differs = json_mismatch(body, check.expect_json)
        if differs is not None:
            return f"JSON {differs}"
    return None


def json_mismatch(actual: Any, expected: dict[str, Any], prefix: str = "") -> str | None:
    """Where *actual* fails to hold *expected*'s key/values (a subset match, recursing into mappings), or None.

    Says which key, never the value that came back."""
    if not isinstance(actual, dict):
        return f"{prefix.rstrip('.') or 'body'} is not an object"
    for key, want in expected.items():
        where = f"{prefix}{key}"
        if key not in actual:
            return f"lacks {where}"
        if isinstance(want, dict):
            nested = json_mismatch(actual[key], want, f"{where}.")
            if nested is not None:
                return nested
        elif actual[key] != want:
            return f"{where} is not {want!r}"
    return None


def summary(results: list[SmokeResult]) -> str:
    failed = [r for r in results if not r.ok]
    if not failed:
        return f"{len(results)}/{len(results)} checks passed"
    return "; ".join(f"{r.path}: {r.detail}" for r in failed)
