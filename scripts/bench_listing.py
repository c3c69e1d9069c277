"""Listings at 10 and at 10,000 messages (issue 16): what one page costs as a table grows.

For each size, a fresh stand-in is loaded with one producer's messages through Herald's own store
(`MessageStore.put_new` of domain messages built as the tests build them), nearly all COMPLETED and
a few in each other status, none delivered. The store makes the items; the loader only batches
their transport: the store's PutItems (and TransactWriteItems made only of puts) are caught on
their way out and sent 25 at a time with BatchWriteItem from several threads, so 10,000 load in
seconds, not minutes. Anything else the store sends (an UpdateItem, a read) goes through as it
is, after what was caught before it.

Then a child process (`bench.py --listing-child`) times each listing, one page each, through
Django's test client (the API with the producer's key; the console as a superuser) and `manage.py
reconcile --dry-run` for the sweep, and counts the Query/Scan requests and the items DynamoDB
reports as scanned (`ScannedCount`). A listing that takes longer than the timeout is stopped
(the child is killed and a new one carries on with the next listing) and shown as "> N s".
"""

from __future__ import annotations

import json
import os
import queue as queue_module
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench_measure import ScanCounter
from bench_setup import BENCH_SCRIPT, LOGS_DIR, PYTHON, ROOT, setup_django, standin
from botocore.awsrequest import AWSResponse

RARE_HOST = "rare-vendor.example.com"
RARE_SHARE = 0.0005  # of the messages, per rare status and for the rare host (at least one each)
LOAD_THREADS = 6
BATCH_WRITE_LIMIT = 25
CHILD_START_SECONDS = 60  # Django's start and the warm-up requests, before the first listing

# (name, what it reads): API paths are the producer's, console paths an operator's.
LISTINGS = [
    ("API: producer, newest 50", "api", "/api/v1/messages?limit=50"),
    ("API: producer, COMPLETED, 50", "api", "/api/v1/messages?status=COMPLETED&limit=50"),
    ("API: producer, PENDING, 5", "api", "/api/v1/messages?status=PENDING&limit=5"),
    ("API: producer, FAILED, 50", "api", "/api/v1/messages?status=FAILED&limit=50"),
    ("console: status FAILED", "console", "/admin/herald/messages/?status=FAILED"),
    ("console: status PENDING", "console", "/admin/herald/messages/?status=PENDING"),
    ("console: producer", "console", "/admin/herald/messages/?producer={producer}"),
    (
        "console: producer + PROCESSING",
        "console",
        "/admin/herald/messages/?producer={producer}&status=PROCESSING",
    ),
    ("console: all statuses", "console", "/admin/herald/messages/"),
    ("console: target host search", "console", f"/admin/herald/messages/?q={RARE_HOST}"),
    ("reconcile: one sweep (dry run)", "reconcile", ""),
]


# -- loading ------------------------------------------------------------------------------------


class BatchedPuts:
    """Catches the PutItems a thread makes on Herald's DynamoDB client while `catching`, and sends
    them with BatchWriteItem through a plain client of the same endpoint."""

    def __init__(self, herald_client: Any, plain_client: Any) -> None:
        self.plain = plain_client
        self.local = threading.local()
        self.batches = 0
        self.lock = threading.Lock()
        herald_client.meta.events.register("before-parameter-build.dynamodb", self._remember)
        herald_client.meta.events.register("before-call.dynamodb", self._catch)

    def _pending(self) -> list[tuple[str, dict[str, Any]]]:
        if not hasattr(self.local, "pending"):
            self.local.pending = []
        return self.local.pending

    def _remember(self, params: dict[str, Any], context: dict, **_: Any) -> None:
        context["bench_load_params"] = params

    def _catch(self, model: Any, context: dict, **_: Any) -> Any:
        if not getattr(self.local, "on", False):
            return None
        params = context.get("bench_load_params") or {}
        puts: list[tuple[str, dict[str, Any]]] = []
        if model.name == "PutItem":
            puts = [(params["TableName"], params["Item"])]
        elif model.name == "TransactWriteItems" and all(
            "Put" in entry for entry in params.get("TransactItems", ())
        ):
            puts = [(e["Put"]["TableName"], e["Put"]["Item"]) for e in params["TransactItems"]]
        if not puts:
            self.flush()  # what the store sends next may depend on what was caught
            return None
        self._pending().extend(puts)
        if len(self._pending()) >= BATCH_WRITE_LIMIT:
            self.flush()
        return AWSResponse("http://bench.invalid", 200, {}, None), {}

    def flush(self) -> None:
        pending = self._pending()
        while pending:
            chunk, pending[:] = pending[:BATCH_WRITE_LIMIT], pending[BATCH_WRITE_LIMIT:]
            requests: dict[str, list[dict[str, Any]]] = {}
            for table, item in chunk:
                requests.setdefault(table, []).append({"PutRequest": {"Item": item}})
            while requests:
                response = self.plain.batch_write_item(RequestItems=requests)
                requests = response.get("UnprocessedItems") or {}
            with self.lock:
                self.batches += 1

    @contextmanager
    def catching(self) -> Iterator[None]:
        """Catch this thread's puts inside the block; send what is left at its end."""
        self.local.on = True
        try:
            yield
        finally:
            self.local.on = False
            self.flush()


def planned_statuses(count: int) -> list[str]:
    """Nearly all COMPLETED, a few of each other status (the same share at every size), at
    random places in time."""
    rare = max(1, round(count * RARE_SHARE))
    statuses = ["PENDING", "QUEUED", "PROCESSING", "FAILED"] * rare
    statuses += ["COMPLETED"] * (count - len(statuses))
    random.Random(16).shuffle(statuses)
    return statuses


def load_messages(count: int, producer_id: str, env: dict[str, str]) -> dict[str, Any]:
    """`count` messages of one producer through Herald's store; what was written, and how long
    it took."""
    import boto3

    from notifications import aws
    from notifications.domain import Status, format_timestamp
    from notifications.store import default_store
    from tests.factories import build_message  # the messages the tests build; ROOT is on sys.path

    store = default_store()
    plain = boto3.session.Session().client(
        "dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], region_name=env["AWS_REGION"]
    )
    batched = BatchedPuts(aws.dynamodb(), plain)
    statuses = planned_statuses(count)
    rare_hosts = set(random.Random(12).sample(range(count), max(1, round(count * RARE_SHARE))))
    start = datetime.now(UTC) - timedelta(hours=20)
    past = format_timestamp(datetime.now(UTC) - timedelta(hours=1))
    samples: dict[str, str] = {}

    def build(n: int) -> Any:
        status = Status(statuses[n])
        fields: dict[str, Any] = {}
        if status == Status.PROCESSING:  # a worker that died: its lease has expired
            fields = {"lease_token": f"lease-{n}", "lease_expires_at": past}
        elif status == Status.QUEUED:  # its queue message was lost an hour ago
            fields = {"next_attempt_at": past}
        elif status == Status.FAILED:
            fields = {"last_error": "HTTP 410: gone"}
        host = RARE_HOST if n in rare_hosts else f"vendor{n % 9}.example.com"
        message = build_message(
            status=status,
            producer_id=producer_id,
            message_id=f"msg_bench{n:022d}",
            created_at=format_timestamp(start + timedelta(seconds=n * 72000 / count)),
            url=f"https://{host}/hooks/{n}",
            **fields,
        )
        samples.setdefault(status.value, message.id)
        return message

    messages = [build(n) for n in range(count)]
    began = time.perf_counter()
    errors: Counter[str] = Counter()

    def load(share: list[Any]) -> None:
        with batched.catching():
            for message in share:
                try:
                    store.put_new(message)
                except Exception as error:
                    errors[type(error).__name__] += 1

    threads = [
        threading.Thread(target=load, args=(messages[k::LOAD_THREADS],))
        for k in range(LOAD_THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.flush_statistics()
    seconds = time.perf_counter() - began
    # The store keeps what it was given: check one message of each status.
    kept = {}
    for status, message_id in samples.items():
        found = store.get(message_id)
        kept[status] = found.status.value if found else None
    return {
        "messages": count,
        "statuses": dict(Counter(statuses)),
        "rare_host_messages": len(rare_hosts),
        "seconds": seconds,
        "batch_writes": batched.batches,
        "errors": dict(errors),
        "status_kept": all(kept[s] == s for s in kept),
        "status_samples": kept,
    }


# -- timing (the child) ---------------------------------------------------------------------------


def listing_child(skip: int) -> int:
    """Time the listings from number `skip` on. On stdout, one JSON line each: "ready" once set
    up, "progress" every second while a listing runs (what it has read so far), "done" with its
    figures."""
    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client, override_settings

    from notifications import aws

    scans = ScanCounter()
    scans.attach(aws.dynamodb())
    producer = os.environ["BENCH_LISTING_PRODUCER"]
    key = os.environ["BENCH_LISTING_API_KEY"]
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    console = Client()
    user, _ = get_user_model().objects.get_or_create(
        username="bench-operator", defaults={"is_staff": True, "is_superuser": True}
    )
    console.force_login(user)
    quiet = open(os.devnull, "w")  # noqa: SIM115 - the child's life
    say_lock = threading.Lock()

    def say(kind: str, **figures: Any) -> None:
        with say_lock:
            print(json.dumps({"kind": kind, **figures}), flush=True)

    running = threading.Event()

    def report_progress() -> None:
        while True:
            time.sleep(1.0)
            if running.is_set():
                say("progress", **scans.peek())

    threading.Thread(target=report_progress, daemon=True).start()
    # The console's pages name static files; this run has no collectstatic manifest.
    static = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    with override_settings(STORAGES={**settings.STORAGES, "staticfiles": static}):
        # Not timed: the first request of each kind imports and compiles what later ones reuse.
        api.get("/api/v1/messages/msg_warm_up")
        console.get("/admin/herald/messages/msg_warm_up/")
        say("ready")
        for position, (_, kind, path) in enumerate(LISTINGS):
            if position < skip:
                continue
            scans.take()
            running.set()
            started = time.perf_counter()
            status = 0
            rows = None
            if kind == "reconcile":
                call_command("reconcile", "--dry-run", stdout=quiet)
            else:
                client = api if kind == "api" else console
                response = client.get(path.format(producer=producer))
                status = response.status_code
                if kind == "api" and status == 200:
                    rows = len(response.json()["results"])
                elif status == 200:
                    rows = response.content.decode().count('class="message-row"')
            seconds = time.perf_counter() - started
            running.clear()
            say("done", seconds=seconds, status=status, rows=rows, **scans.take())
    return 0


def time_listings(env: dict[str, str], producer: str, key: str, timeout: float) -> list[dict]:
    """Each listing's figures; for one stopped at `timeout`, what it had read by then."""
    results: list[dict[str, Any]] = []
    child_env = {**env, "BENCH_LISTING_PRODUCER": producer, "BENCH_LISTING_API_KEY": key}
    position = 0
    while position < len(LISTINGS):
        with (LOGS_DIR / "listing-child.log").open("ab") as log:
            process = subprocess.Popen(
                [PYTHON, BENCH_SCRIPT, "--listing-child", "--skip", str(position)],
                cwd=ROOT,
                env=child_env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        lines: queue_module.Queue[dict[str, Any] | None] = queue_module.Queue()
        threading.Thread(target=_read_lines, args=(process, lines), daemon=True).start()
        try:
            position = _follow(lines, position, timeout, results)
        finally:
            process.kill()
            process.wait()
    return results


def _read_lines(process: subprocess.Popen, lines: queue_module.Queue) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(json.loads(line))
    lines.put(None)


def _follow(
    lines: queue_module.Queue, position: int, timeout: float, results: list[dict[str, Any]]
) -> int:
    """Record what one child reports, from `position` on; the position to go on from (past a
    listing that timed out or failed)."""
    ready = False
    progress: dict[str, Any] = {}
    deadline = time.monotonic() + CHILD_START_SECONDS
    while position < len(LISTINGS):
        name = LISTINGS[position][0]
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue_module.Empty:
            if ready:  # stopped: what it had read so far
                results.append({"name": name, "timed_out": True, "seconds": timeout, **progress})
            else:
                results.append({"name": name, "timed_out": False, "failed": True})
            return position + 1
        if line is None:  # the child ended without an answer: see listing-child.log
            results.append({"name": name, "timed_out": False, "failed": True})
            return position + 1
        if line["kind"] == "progress":
            progress = {k: v for k, v in line.items() if k != "kind"}
            continue
        if line["kind"] == "done":
            results.append({"name": name, "timed_out": False, **line})
            position += 1
            progress = {}
        ready = True
        deadline = time.monotonic() + timeout
    return position


def run_listing(options: Any, env: dict[str, str]) -> dict[str, Any]:
    from notifications.models import Producer

    sizes: dict[str, Any] = {}
    (LOGS_DIR / "listing-child.log").unlink(missing_ok=True)
    for count in options.listing_sizes:
        producer = Producer(name=f"bench-listing-{count}")
        key = producer.set_new_api_key()
        producer.save()
        print(f"  ... listing: loading {count:,} messages", file=sys.stderr, flush=True)
        with standin(env, f"listing-{count}"):
            from notifications import aws

            aws.reset_clients()
            loaded = load_messages(count, producer.public_id, env)
            print(
                f"  ... listing: {count:,} loaded in {loaded['seconds']:.0f} s; timing",
                file=sys.stderr,
                flush=True,
            )
            timings = time_listings(env, producer.public_id, key, options.listing_timeout)
        sizes[str(count)] = {"load": loaded, "listings": timings}
    return {
        "scenario": "listing",
        "title": "listings at " + " and ".join(f"{n:,}" for n in options.listing_sizes),
        "kind": "listing",
        "timeout_seconds": options.listing_timeout,
        "sizes": sizes,
    }
