"""The delivery worker's small HTTP server: /metrics, /livez and /readyz on WORKER_METRICS_PORT.

The worker has no web framework, so this is the standard library's threading HTTP server on a
daemon thread. It knows nothing about the worker: the worker passes in what "live" and "ready" mean
(callables), and the answers have the same shape as the web process's.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from notifications import health, metrics

logger = logging.getLogger(__name__)


PATHS = ("/livez", "/readyz", "/metrics")


class StatusEndpoints:
    """What /livez, /readyz and /metrics answer, for the web process (its middleware) and the
    worker (the server below) alike: the process passes in what "live" and "ready" mean."""

    def __init__(
        self,
        *,
        liveness: Callable[[], bool],
        readiness: Callable[[], health.HealthReport],
        collectors: tuple[Any, ...] = (),
    ) -> None:
        self.liveness = liveness
        self.readiness = readiness
        self.collectors = collectors

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of `path`."""
        if path == "/metrics":
            return 200, metrics.CONTENT_TYPE, metrics.render_metrics(*self.collectors)
        if path == "/livez":
            if self.liveness():
                return 200, "application/json", json.dumps(health.alive()).encode()
            return 503, "application/json", json.dumps({"status": "failing"}).encode()
        if path == "/readyz":
            report = self.readiness()
            return report.http_status, "application/json", json.dumps(report.as_dict()).encode()
        return 404, "application/json", json.dumps({"status": "not found"}).encode()


class StatusServer:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        liveness: Callable[[], bool],
        readiness: Callable[[], health.HealthReport],
        collectors: tuple[Any, ...] = (),
    ) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, content_type, body = server.answer(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass  # scraped every few seconds: no access log

        self.endpoints = StatusEndpoints(
            liveness=liveness, readiness=readiness, collectors=collectors
        )
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="status-server", daemon=True
        )

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def answer(self, path: str) -> tuple[int, str, bytes]:
        return self.endpoints.answer(path)

    def start(self) -> StatusServer:
        self._thread.start()
        logger.info("status endpoints on port %d: /metrics, /livez, /readyz", self.port)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()


def start_status_server(
    *,
    host: str,
    port: int,
    liveness: Callable[[], bool],
    readiness: Callable[[], health.HealthReport],
    collectors: tuple[Any, ...] = (),
) -> StatusServer:
    """Serve /metrics, /livez and /readyz on (host, port) from a daemon thread; `stop()` ends it."""
    return StatusServer(
        host=host, port=port, liveness=liveness, readiness=readiness, collectors=collectors
    ).start()
