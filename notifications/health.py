"""Health reports for /livez and /readyz, shared by the web process and the worker.

Pure: a readiness report runs the checks it is given (callables that raise when their dependency does
not answer) side by side under one deadline, and says which failed and how, by error class only, so
no secret or address ever reaches a probe's answer. The AWS checks themselves live in
`notifications.aws_probes`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

Check = Callable[[], None]


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def http_status(self) -> int:
        return 200 if self.ok else 503

    def as_dict(self) -> dict[str, Any]:
        """The probe's JSON body: overall status and each check by name."""
        checks: dict[str, Any] = {}
        for check in self.checks:
            entry: dict[str, Any] = {
                "status": "ok" if check.ok else "failing",
                "seconds": round(check.seconds, 3),
            }
            if check.error:
                entry["error"] = check.error
            checks[check.name] = entry
        return {"status": "ok" if self.ok else "failing", "checks": checks}


def alive() -> dict[str, str]:
    """/livez's body when the process is up."""
    return {"status": "ok"}


def run_checks(
    checks: Mapping[str, Check],
    *,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
) -> HealthReport:
    """Run every check at once; one that raises, or has not finished `timeout` seconds after the
    start, fails with its error class (or "Timeout") as the reason."""
    started = clock()
    deadline = started + timeout
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="health")
    try:
        futures = {name: pool.submit(_timed, check, clock) for name, check in checks.items()}
        results = []
        for name, future in futures.items():
            try:
                seconds, error = future.result(timeout=max(0.0, deadline - clock()))
            except FutureTimeout:
                seconds, error = clock() - started, "Timeout"
            results.append(CheckResult(name, error is None, seconds, error))
    finally:
        # A check past its deadline finishes on its own (its AWS client has timeouts too); the
        # answer does not wait for it.
        pool.shutdown(wait=False)
    return HealthReport(tuple(results))


def _timed(check: Check, clock: Callable[[], float]) -> tuple[float, str | None]:
    started = clock()
    try:
        check()
    except Exception as error:
        return clock() - started, _describe(error)
    return clock() - started, None


def _describe(error: Exception) -> str:
    """The error class, and for an AWS error its code (ResourceNotFoundException…); never the text,
    which may name an endpoint or an account. An error raised from another (Herald's AWS wrapper
    raises AWSUnavailable from botocore's) is described by the one it came from."""
    while error.__cause__ is not None:
        error = error.__cause__  # type: ignore[assignment]
    name = type(error).__name__
    response = getattr(error, "response", None)
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return f"{name}: {code}" if code and code != name else name
