"""The local vendors the bench delivers to, in a child process of their own (`bench.py
--vendor-child`): a fast one and a slow one on 127.0.0.1, and one that never answers on 127.0.0.2
(another *host*, because the worker's per-host limit keys on the host name, not on host:port).
Each counts the requests it saw and the calls held open at it."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from bench_setup import BENCH_SCRIPT, PYTHON, ROOT, stop_process

HEALTHY_HOST = "127.0.0.1"
HANGING_HOST = "127.0.0.2"  # a different host: the worker's per-host limit keys on the host name
HANG_SECONDS = 3600.0  # "never answers": far past any delivery timeout


class VendorStats:
    """Requests seen and calls open at one vendor (open = answer not yet sent)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.open = 0
        self.max_open = 0

    def enter(self) -> None:
        with self.lock:
            self.requests += 1
            self.open += 1
            self.max_open = max(self.max_open, self.open)

    def leave(self) -> None:
        with self.lock:
            self.open -= 1

    def take(self) -> dict[str, int]:
        """Current figures; the maximum starts again from what is open now."""
        with self.lock:
            figures = {"requests": self.requests, "open": self.open, "max_open": self.max_open}
            self.max_open = self.open
            return figures


def vendor_handler(delay: float, stats: VendorStats) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            stats.enter()
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if delay >= 1:
                    if not self._hold(delay):
                        return  # the caller hung up (Herald's delivery timeout)
                elif delay:
                    time.sleep(delay)
                body = b'{"ok":true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # the caller gave up (timeout)
            finally:
                stats.leave()

        def _hold(self, seconds: float) -> bool:
            """Say nothing for `seconds`; False as soon as the caller closes the connection,
            so `open` counts the calls Herald is still waiting on."""
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                readable, _, _ = select.select([self.connection], [], [], 0.5)
                if readable:
                    try:
                        if not self.connection.recv(1, socket.MSG_PEEK):
                            return False
                    except OSError:
                        return False
                    time.sleep(0.5)
            return True

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def vendor_child(slow_ms: int) -> int:
    """Serve the three vendors; print their base URLs as one JSON line, then answer "stats" lines
    on stdin with one JSON line each; exit when stdin closes."""
    specs = {
        "fast": (HEALTHY_HOST, 0.0),
        "slow": (HEALTHY_HOST, slow_ms / 1000),
        "hang": (HANGING_HOST, HANG_SECONDS),
    }
    urls = {}
    stats = {name: VendorStats() for name in specs}
    for name, (host, delay) in specs.items():
        server = ThreadingHTTPServer((host, 0), vendor_handler(delay, stats[name]))
        server.daemon_threads = True
        server.request_queue_size = 128
        threading.Thread(target=server.serve_forever, daemon=True).start()
        urls[name] = f"http://{host}:{server.server_address[1]}"
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print(json.dumps(urls), flush=True)
    for line in sys.stdin:  # the bench closes our stdin when it is done
        if line.strip() == "stats":
            print(json.dumps({name: s.take() for name, s in stats.items()}), flush=True)
    return 0


class VendorProcess:
    def __init__(self, slow_ms: int, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [PYTHON, BENCH_SCRIPT, "--vendor-child", "--slow-ms", str(slow_ms)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self.urls: dict[str, str] = json.loads(self._line())

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the vendor process exited (code {self.process.poll()})")
        return line.decode()

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(b"stats\n")
            self.process.stdin.flush()
            return json.loads(self._line())

    def stop(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        stop_process(self.process, 5)
