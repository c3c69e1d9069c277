"""Run a command (`python -m tests.support.signal_at_lock manage.py run_worker ...`) so that, once
it has received its first SIGTERM, further stop signals arrive at the worst moment: just after
its main thread took a lock (a `threading.Condition`'s, as `Event.set()` and the worker's own
`with self._slots` take it), before it lets go.

That is the timing two SIGTERMs a millisecond apart met by chance in the soak: the second signal's
handler runs in the main thread while the main thread holds a lock. Here it is made certain rather
than rare, and nothing of Herald is replaced: a profile function on the main thread (Python's
`sys.setprofile`) watches for the SIGTERM handler being called (arming) and for
`Condition.__enter__` returning there, and then sends the process a SIGINT (Ctrl-C), `SIGNALS`
times in all.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = 3

_enter = threading.Condition.__enter__.__code__
_armed = False
_sent = 0


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    global _armed, _sent
    if event == "call" and not _armed:
        handler = signal.getsignal(signal.SIGTERM)
        _armed = frame.f_code is getattr(handler, "__code__", None)
    elif event == "return" and _armed and frame.f_code is _enter and _sent < SIGNALS:
        _sent += 1
        os.kill(os.getpid(), signal.SIGINT)


def main() -> None:
    script, *arguments = sys.argv[1:]
    sys.argv = [script, *arguments]
    sys.setprofile(_profile)  # this (the main) thread only: signal handlers run on it
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
