"""`make bench` (second part): the AWS calls a delivered message costs the worker with the host
guard (issue 13), without and with a host policy, against the worker without it.

One process: the embedded AWS stand-in on a thread, local vendors (one per scenario, each on its
own loopback address, because policies key on the host), and Herald's real worker
(`Worker.from_settings()`, concurrency 16) on a thread, as `run_worker` runs it. Messages are
submitted through `services.message_submit` from the main thread, paced (at most 40 submitted and
not yet answered by the vendor), so moto's queue stays short. The vendor answers 200 after 50 ms.

Counted: every AWS API call made by Herald's clients (botocore `before-parameter-build`, once per
call) from any thread but the submitting one, from the worker's start until it stopped and
flushed, divided by the messages delivered; and apart, the calls on hosts' items (keys `HOST#…`
and the rate windows `LIMIT#host:…`): what the host guard adds, exactly. (The worker's total
moves by a few tenths between runs of the same scenario, with races between the submitting
thread's PENDING -> QUEUED and the worker's claim, and with the once-a-second dashboard count
write over runs of different lengths; the guard's own calls do not depend on those.) The
scenarios:

  without guard      the worker as before issue 13 (no host guard: the baseline)
  no policy          the guard with the defaults: circuit breaking on, no fleet-wide limits
  in flight 4        a policy: at most 4 calls in flight across workers
  4 in flight, 20/s  a policy: at most 4 in flight and 20 calls a second (tokens 2 at a time)

    .venv/bin/python scripts/bench_hosts.py [--messages 200]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench-results" / "bench_hosts.json"
MAX_OUTSTANDING = 40
VENDOR_DELAY = 0.05
SCENARIOS = [
    # (name, vendor address, guard on, policy)
    ("without guard", "127.0.0.1", False, None),
    ("no policy", "127.0.0.2", True, None),
    ("in flight 4", "127.0.0.3", True, {"max_in_flight": 4}),
    ("4 in flight, 20/s", "127.0.0.4", True, {"max_in_flight": 4, "max_per_second": 20}),
]


class Vendor:
    """Answers 200 after VENDOR_DELAY; counts calls."""

    def __init__(self, address: str) -> None:
        self.calls = 0
        self._lock = threading.Lock()
        vendor = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(VENDOR_DELAY)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with vendor._lock:
                    vendor.calls += 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://{address}:{self.server.server_address[1]}/hook"


def on_host_items(params: dict[str, Any]) -> bool:
    """Whether a DynamoDB call's keys are hosts' items (state, events, rate windows)."""
    keys = [params.get("Key") or {}]
    for request in (params.get("RequestItems") or {}).values():
        keys += request.get("Keys", []) if isinstance(request, dict) else []
    names = [key.get("pk", {}).get("S", "") for key in keys]
    return any(name.startswith(("HOST#", "HOSTS", "LIMIT#host:")) for name in names)


class CallCounter:
    """AWS API calls by operation (`host:` in front for calls on hosts' items), from every
    thread but the ones marked `ignored`."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-parameter-build.{service}", self._on_call)

    def ignore_this_thread(self) -> None:
        self._local.ignored = True

    def _on_call(self, event_name: str, params: dict[str, Any], **_: Any) -> None:
        if not getattr(self._local, "ignored", False):
            _, service, operation = event_name.split(".", 2)
            name = f"{service}.{operation}"
            if service == "dynamodb" and on_host_items(params):
                name = f"host:{name}"
            with self._lock:
                self.calls[name] += 1

    def take(self) -> Counter[str]:
        with self._lock:
            taken, self.calls = self.calls, Counter()
        return taken


def run_scenario(
    name: str, address: str, guard: bool, policy: dict | None, messages: int, counter: CallCounter
) -> dict[str, Any]:
    from notifications import services
    from notifications.services import Submission
    from notifications.worker import Worker

    vendor = Vendor(address)
    if policy:
        services.host_policy_set(host=address, **policy)
    worker = Worker.from_settings(concurrency=16)
    if not guard:
        worker.admission.hosts = worker.hosts = None
    counter.take()  # nothing before the worker starts counts
    thread = threading.Thread(target=worker.run, daemon=True)
    started = time.monotonic()
    thread.start()
    submission = Submission(
        target_url=vendor.url, method="POST", headers={}, body='{"n": 1}', body_is_json=True
    )
    submitted = 0
    while vendor.calls < messages:
        if submitted < messages and submitted - vendor.calls < MAX_OUTSTANDING:
            services.message_submit(producer_id="prd_bench", submission=submission)
            submitted += 1
        else:
            time.sleep(0.01)
        if time.monotonic() - started > 600:
            raise SystemExit(f"{name}: {vendor.calls} of {messages} delivered in 10 minutes")
    while worker.in_flight or worker.waiting:
        time.sleep(0.05)
    seconds = time.monotonic() - started
    worker.stop()
    thread.join(timeout=60)
    calls = counter.take()
    vendor.server.shutdown()
    guard = {op: n for op, n in calls.items() if op.startswith("host:")}
    return {
        "scenario": name,
        "policy": policy,
        "delivered": vendor.calls,
        "seconds": round(seconds, 1),
        "calls_per_message": round(sum(calls.values()) / vendor.calls, 3),
        "guard_calls_per_message": round(sum(guard.values()) / vendor.calls, 3),
        "by_operation": {op: round(n / vendor.calls, 3) for op, n in sorted(calls.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--messages", type=int, default=int(os.environ.get("BENCH_HOST_MESSAGES", 200))
    )
    options = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from scripts.aws_standin import StandinThread

    standin = StandinThread().start()
    workdir = tempfile.mkdtemp(prefix="herald-bench-hosts-")
    os.environ.update(
        HERALD_ENV_FILE=os.path.join(workdir, "absent.env"),
        DJANGO_SETTINGS_MODULE="config.settings",
        AWS_ENDPOINT_URL=standin.endpoint,
        AWS_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - the stand-in takes anything
        DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3",
        DELIVERY_ALLOWED_NETWORKS="127.0.0.0/8",
        WORKER_POLL_SECONDS="1",
        WORKER_METRICS_PORT="0",
        LOG_LEVEL="WARNING",
        INTAKE_RATE="0",
    )
    import django

    django.setup()
    from django.core.management import call_command

    from notifications import aws

    call_command("migrate", verbosity=0)
    call_command("bootstrap", verbosity=0)
    counter = CallCounter()
    counter.ignore_this_thread()  # the submitting thread: intake is not the worker's cost
    for service in ("dynamodb", "sqs"):
        counter.attach(aws.client(service))
    results = [
        run_scenario(name, address, guard, policy, options.messages, counter)
        for name, address, guard, policy in SCENARIOS
    ]
    standin.stop()
    print(f"\nAWS calls per delivered message in the worker ({options.messages} messages each)")
    print(f"{'scenario':<20} {'all':>6} {'guard':>6}  the guard's, by operation")
    for result in results:
        guard = {
            op.removeprefix("host:dynamodb."): n
            for op, n in result["by_operation"].items()
            if op.startswith("host:")
        }
        print(
            f"{result['scenario']:<20} {result['calls_per_message']:>6.2f} "
            f"{result['guard_calls_per_message']:>6.2f}  {guard or ''}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
