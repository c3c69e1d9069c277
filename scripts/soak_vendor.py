"""The soak's vendor: one local HTTP server per kind of endpoint, every call recorded.

Each kind listens on its own loopback address (the worker's per-host limits key on the host name,
so one slow kind cannot take the slots of the others), all on the same port:

| Kind | Address | Answers |
|---|---|---|
| healthy | 127.0.0.11 | 200 at once |
| flaky | 127.0.0.12 | 503 to the first `fail` calls of each message (`?fail=N`), then 200 |
| slow | 127.0.0.13 | 200 after `?ms=N` milliseconds |
| ratelimit | 127.0.0.14 | 200 while a token bucket (`--rate` per second) has tokens, else 429 with `Retry-After` |
| permanent | 127.0.0.15 | 422 always: the message is expected to end FAILED |

Every call is recorded: the message (`Herald-Message-Id`), the kind, when it was received and
answered (wall clock, comparable with Herald's timestamps), the status answered and whether the
answer could be written (False: the caller had gone, e.g. a killed worker). The control address
(127.0.0.1 on the same port) serves `GET /progress` (messages that got their final answer: a 2xx
or the permanent 422) and `GET /calls` (every call, as JSON).

    python scripts/soak_vendor.py --port 18080 [--rate 2]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

KINDS = {
    "healthy": "127.0.0.11",
    "flaky": "127.0.0.12",
    "slow": "127.0.0.13",
    "ratelimit": "127.0.0.14",
    "permanent": "127.0.0.15",
}
CONTROL_HOST = "127.0.0.1"
PERMANENT_STATUS = 422
RETRY_AFTER_SECONDS = 1


class Recorder:
    """Calls as they come, the per-message state the flaky kind needs, and the rate limiter."""

    def __init__(self, rate: float) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.finished: set[str] = set()
        self.rate = rate
        self.tokens = rate
        self.refilled = time.monotonic()

    def answer(self, kind: str, message_id: str, query: dict[str, list[str]]) -> tuple[int, float]:
        """(status, delay in seconds) for this call."""
        with self.lock:
            self.seen[message_id] += 1
            calls = self.seen[message_id]
            if kind == "flaky":
                fail = int(query.get("fail", ["2"])[0])
                return (503 if calls <= fail else 200), 0.0
            if kind == "slow":
                return 200, int(query.get("ms", ["1000"])[0]) / 1000
            if kind == "ratelimit":
                now = time.monotonic()
                self.tokens = min(self.rate, self.tokens + (now - self.refilled) * self.rate)
                self.refilled = now
                if self.tokens < 1:
                    return 429, 0.0
                self.tokens -= 1
                return 200, 0.0
            if kind == "permanent":
                return PERMANENT_STATUS, 0.0
            return 200, 0.0

    def record(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(call)
            if 200 <= call["status"] < 300 or call["status"] == PERMANENT_STATUS:
                self.finished.add(call["id"])

    def progress(self) -> dict[str, int]:
        with self.lock:
            return {"calls": len(self.calls), "finished": len(self.finished)}

    def all_calls(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.calls)


def handler_for(recorder: Recorder, kind: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            received = time.time()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            url = urlsplit(self.path)
            if kind is None:  # the control address
                self._control(url.path)
                return
            message_id = self.headers.get("Herald-Message-Id", "")
            status, delay = recorder.answer(kind, message_id, parse_qs(url.query))
            if delay:
                time.sleep(delay)
            written = self._reply(status)
            recorder.record(
                {
                    "id": message_id,
                    "kind": kind,
                    "received": received,
                    "answered": time.time(),
                    "status": status,
                    "written": written,
                }
            )

        def _reply(self, status: int, body: bytes = b"ok") -> bool:
            try:
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", str(RETRY_AFTER_SECONDS))
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:  # the caller went away (killed, or gave up)
                self.close_connection = True
                return False
            return True

        def _control(self, path: str) -> None:
            if path == "/progress":
                data: Any = recorder.progress()
            elif path == "/calls":
                data = recorder.all_calls()
            else:
                self._reply(404, b"no such control")
                return
            body = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, default=2.0, help="ratelimit kind: calls per second")
    options = parser.parse_args()
    recorder = Recorder(options.rate)
    servers = []
    for kind, host in [*KINDS.items(), (None, CONTROL_HOST)]:
        server = ThreadingHTTPServer((host, options.port), handler_for(recorder, kind))
        server.daemon_threads = True
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        servers[0].serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
