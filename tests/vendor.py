"""A real local HTTP server playing the vendor: scripted answers per path, every request recorded
(with its arrival on the monotonic and the wall clock), and the most calls it held at once."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    wall: float = 0.0  # time.time(), to compare with Herald's recorded timestamps


class Vendor:
    def __init__(self) -> None:
        self.received: list[Received] = []
        self._scripts: dict[str, deque[Answer]] = defaultdict(deque)
        self._defaults: dict[str, Answer] = {}
        self._lock = threading.Lock()
        self._active: dict[str, int] = defaultdict(int)
        self.max_active: dict[str, int] = defaultdict(int)
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                answer = vendor._record_and_pick(self.command, self.path, dict(self.headers), body)
                try:
                    if answer.delay:
                        time.sleep(answer.delay)
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the caller gave up (timeout) or was killed
                finally:
                    vendor._done(self.path)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _record_and_pick(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        with self._lock:
            self.received.append(
                Received(method, path, headers, body, time.monotonic(), time.time())
            )
            self._active[path] += 1
            self.max_active[path] = max(self.max_active[path], self._active[path])
            script = self._scripts[path]
            if script:
                return script.popleft()
            return self._defaults.get(path, Answer())

    def _done(self, path: str) -> None:
        with self._lock:
            self._active[path] -= 1

    def start(self) -> Vendor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def script(self, path: str, *answers: Answer, then: Answer | None = None) -> str:
        """Answer the next requests to `path` with `answers`, then with `then` (default 200)."""
        with self._lock:
            self._scripts[path].extend(answers)
            if then is not None:
                self._defaults[path] = then
        return self.url(path)

    def requests_to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]
