"""The embedded AWS stand-in: moto's server on loopback, with DynamoDB requests serialized.

Real DynamoDB applies every conditional write atomically, and Herald's guarded transitions rely on
it. moto's DynamoDB backend takes no lock and its server answers requests on threads, so two racing
conditional UpdateItems could both pass their condition (seen here: two workers both claiming one
message). Serializing DynamoDB requests restores the atomicity; SQS requests stay concurrent so a
worker's long poll never blocks anyone else.

    python scripts/aws_standin.py -H 127.0.0.1 -p 4566
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server


class SerializedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else as it comes."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class QuietRequestHandler(MotoRequestHandler):
    """No access log: workers long-poll SQS all the time, which would flood the terminal."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def build_server(host: str, port: int) -> BaseWSGIServer:
    app = SerializedDynamoDB(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)


class StandinThread:
    """The stand-in on a background thread (tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = build_server(host, port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    options = parser.parse_args()
    server = build_server(options.host, options.port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
