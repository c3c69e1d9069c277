"""The one way tests wait for something that happens on another thread or process: poll a
condition until it holds, and fail the test, saying what never happened, when time runs out."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    condition: Callable[[], object],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
) -> None:
    """Call `condition` until it returns something true, `interval` seconds apart.

    After `timeout` seconds the test fails with `what`; pass a function instead of a string when
    the message should describe the state at that moment (it is called only then)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {described}")
        time.sleep(interval)
