"""The embedded AWS stand-in: moto's server on loopback, with DynamoDB requests serialized, and an
optional fault mode for soak tests.

Real DynamoDB applies every conditional write atomically, and Herald's guarded transitions rely on
it. moto's DynamoDB backend takes no lock and its server answers requests on threads, so two racing
conditional UpdateItems could both pass their condition (seen here: two workers both claiming one
message). Serializing DynamoDB requests restores the atomicity; SQS requests stay concurrent so a
worker's long poll never blocks anyone else.

    python scripts/aws_standin.py -H 127.0.0.1 -p 4566 [--faults]

**Fault mode** (`--faults`; off by default, and `make run` never turns it on) lets a test make the
stand-in misbehave the way AWS does, through a control endpoint on the same port:

- `POST /_standin/faults` with a JSON object of shares (0 to 1) of the requests to answer with an
  error instead of carrying them out: `dynamodb_throttle` (400
  ProvisionedThroughputExceededException), `dynamodb_error` (500 InternalServerError),
  `sqs_throttle` (400 ThrottlingException), `sqs_error` (500 InternalError); keys left out keep
  their value. botocore retries all four, as it would against AWS.
- `POST /_standin/outage` with `{"seconds": S}`: for S seconds the stand-in refuses connections
  (its listening socket is closed) and drops requests arriving on connections already open,
  without an answer. It listens again by itself.
- `GET /_standin/faults`: the shares and how many faults of each kind were injected so far.

An injected error is answered before the request reaches moto, so it is never carried out (as
with AWS's throttling; a real 500 may leave the outcome unknown, which this does not imitate).
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

CONTROL_PREFIX = "/_standin/"
# Fault kind -> (service, HTTP status, error code as AWS's JSON protocol names it).
FAULTS: dict[str, tuple[str, int, str]] = {
    "dynamodb_throttle": (
        "dynamodb",
        400,
        "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
    ),
    "dynamodb_error": ("dynamodb", 500, "com.amazonaws.dynamodb.v20120810#InternalServerError"),
    "sqs_throttle": ("sqs", 400, "com.amazonaws.sqs#ThrottlingException"),
    "sqs_error": ("sqs", 500, "com.amazonaws.sqs#InternalError"),
}
OUTAGE_LONGEST_SECONDS = 60.0


def service_of(environ: dict[str, Any]) -> str | None:
    """dynamodb or sqs for a request in AWS's JSON protocol (what Herald's clients speak)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb"
    if target.startswith("AmazonSQS."):
        return "sqs"
    return None


class SerializedDynamoDB:
    """WSGI middleware: one DynamoDB request at a time, everything else as it comes."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if service_of(environ) == "dynamodb":
            with self.lock:
                return list(self.app(environ, start_response))
        return self.app(environ, start_response)


class FaultPlan:
    """What to inject (shares by kind, an outage's end) and what was injected (counts)."""

    def __init__(self, seed: int = 0) -> None:
        self.lock = threading.Lock()
        self.shares = dict.fromkeys(FAULTS, 0.0)
        self.counts: Counter[str] = Counter()
        self.random = random.Random(seed)
        self.outage_ends = 0.0  # monotonic
        self.on_outage: Callable[[], None] = lambda: None  # set by the server

    def set_shares(self, shares: dict[str, Any]) -> None:
        unknown = set(shares) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds: {sorted(unknown)}")
        values = {kind: float(share) for kind, share in shares.items()}
        if any(not 0 <= share <= 1 for share in values.values()):
            raise ValueError("shares are from 0 to 1")
        with self.lock:
            self.shares.update(values)

    def pick(self, service: str) -> str | None:
        """The fault to answer this request with, or None: carry it out."""
        with self.lock:
            draw = self.random.random()
            for kind, (kind_service, _, _) in FAULTS.items():
                if kind_service != service:
                    continue
                if draw < self.shares[kind]:
                    self.counts[kind] += 1
                    return kind
                draw -= self.shares[kind]
        return None

    def begin_outage(self, seconds: float) -> None:
        """Refuse connections for `seconds` from now (an outage under way is lengthened)."""
        now = time.monotonic()
        with self.lock:
            under_way = self.outage_ends > now
            self.outage_ends = max(self.outage_ends, now + seconds)
            self.counts["outage"] += 1
            self.counts["outage_ms"] += round(seconds * 1000)
        if not under_way:  # the serving loop is closed already, and re-checks the end
            self.on_outage()

    def outage_remaining(self) -> float:
        with self.lock:
            return max(0.0, self.outage_ends - time.monotonic())

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] += 1

    def report(self) -> dict[str, Any]:
        with self.lock:
            return {
                "shares": dict(self.shares),
                "counts": dict(self.counts),
                "outage_remaining": max(0.0, self.outage_ends - time.monotonic()),
            }


class FaultInjection:
    """WSGI middleware of the fault mode: the control endpoint, and injected AWS errors."""

    def __init__(self, app: Callable[..., Iterable[bytes]], plan: FaultPlan) -> None:
        self.app = app
        self.plan = plan

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self.control(environ, start_response, path[len(CONTROL_PREFIX) :])
        service = service_of(environ)
        kind = self.plan.pick(service) if service else None
        if kind is None:
            return self.app(environ, start_response)
        _, status, code = FAULTS[kind]
        body = json.dumps({"__type": code, "message": "injected by the stand-in's fault mode"})
        start_response(
            f"{status} {'Bad Request' if status == 400 else 'Internal Server Error'}",
            [
                ("Content-Type", "application/x-amz-json-1.0"),
                ("x-amzn-RequestId", f"standin-fault-{self.plan.counts[kind]}"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body.encode()]

    def control(
        self, environ: dict[str, Any], start_response: Callable[..., Any], action: str
    ) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            data = json.loads(environ["wsgi.input"].read(length) or b"{}") if length else {}
            if action == "faults" and method == "POST":
                self.plan.set_shares(data)
            elif action == "outage" and method == "POST":
                seconds = float(data.get("seconds", 0))
                if not 0 < seconds <= OUTAGE_LONGEST_SECONDS:
                    raise ValueError(f"seconds: from 0 to {OUTAGE_LONGEST_SECONDS:g}")
                self.plan.begin_outage(seconds)
            elif action != "faults" or method != "GET":
                return _json(start_response, "404 Not Found", {"error": "no such control"})
        except (ValueError, TypeError, AttributeError) as error:
            return _json(start_response, "400 Bad Request", {"error": str(error)})
        return _json(start_response, "200 OK", self.plan.report())


def _json(start_response: Callable[..., Any], status: str, data: Any) -> list[bytes]:
    body = json.dumps(data).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class QuietRequestHandler(MotoRequestHandler):
    """No access log: workers long-poll SQS all the time, which would flood the terminal. In an
    outage, a request on a connection opened before it is dropped without an answer."""

    def handle_one_request(self) -> None:
        plan: FaultPlan | None = getattr(self.server, "fault_plan", None)
        if plan is not None and plan.outage_remaining() > 0:
            plan.count("outage_dropped_requests")
            self.close_connection = True
            return
        super().handle_one_request()

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def build_server(host: str, port: int, *, faults: FaultPlan | None = None) -> BaseWSGIServer:
    app: Callable[..., Iterable[bytes]] = SerializedDynamoDB(
        DomainDispatcherApplication(create_backend_app)
    )
    if faults is not None:
        app = FaultInjection(app, faults)
    server = make_server(host, port, app, threaded=True, request_handler=QuietRequestHandler)
    server.fault_plan = faults  # type: ignore[attr-defined]
    if faults is not None:
        # Stop accepting from another thread: shutdown() waits for the serving loop to end.
        faults.on_outage = lambda: threading.Thread(target=server.shutdown, daemon=True).start()
    return server


def serve(server: BaseWSGIServer, stopping: threading.Event) -> None:
    """serve_forever, except that an outage of the fault mode closes the listening socket (new
    connections are refused) until it ends, then listens again on the same address."""
    plan: FaultPlan | None = getattr(server, "fault_plan", None)
    while not stopping.is_set():
        server.serve_forever(poll_interval=0.1)
        if plan is None or stopping.is_set():
            return
        remaining = plan.outage_remaining()
        if remaining <= 0:
            return  # shut down from outside
        server.socket.close()
        while remaining > 0 and not stopping.wait(remaining):
            remaining = plan.outage_remaining()  # another outage may have lengthened it
        if stopping.is_set():
            return
        server.socket = socket.socket(server.address_family, server.socket_type)
        server.server_bind()
        server.server_activate()


class StandinThread:
    """The stand-in on a background thread (tests). `faults` turns the fault mode on."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, faults: FaultPlan | None = None
    ) -> None:
        self.server = build_server(host, port, faults=faults)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=serve, args=(self.server, self.stopping), daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> StandinThread:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=4566)
    parser.add_argument(
        "--faults",
        action="store_true",
        help="Fault mode: serve the /_standin/ control endpoint (AWS errors, outages).",
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fault mode's draws.")
    options = parser.parse_args()
    plan = FaultPlan(options.seed) if options.faults else None
    server = build_server(options.host, options.port, faults=plan)
    stopping = threading.Event()
    try:
        serve(server, stopping)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
