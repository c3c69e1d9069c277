"""`make bench`: end-to-end delivery benchmark on the embedded stack, with local vendors.

What runs (every process on this machine, all on loopback):
  - the AWS stand-in (scripts/aws_standin.py, moto), a fresh one per scenario, bootstrapped with
    `manage.py bootstrap`;
  - the vendors (this script with --vendor-child): a fast one and a 200 ms one on 127.0.0.1, and
    one that never answers on 127.0.0.2 (another *host*, because the worker's per-host limit keys
    on the host name, not on host:port);
  - one Herald worker (this script with --worker-child): Herald's real `Worker.from_settings()`,
    run like `manage.py run_worker`, plus botocore event counters on the clients from
    `notifications.aws` and a way to snapshot its counters and CPU time;
  - this process: calls `notifications.services.message_submit` from a few threads (Herald's intake
    use case without HTTP, DRF, authentication or validation) and watches for completion through
    the worker's own count of "completed" outcomes (polling DynamoDB would load the stand-in).

What is measured:
  - deliveries per second and latency from acceptance (the message's `created_at`, stamped when
    `message_submit` starts) to its COMPLETED transition (the history entry's timestamp); both are
    Herald's own clock readings, so the result does not depend on how often the bench polls;
  - AWS API calls per delivered message (botocore `before-call`, one per API call; `before-send`,
    one per HTTP attempt including retries, is recorded in the JSON) on the submit side and in the
    worker, by operation. The bench's own polling is not counted;
  - CPU seconds in Herald's processes: the submitting threads of this process (`time.thread_time`)
    and the whole worker process (`getrusage(RUSAGE_SELF)`, all threads), as the difference
    between snapshots at the start and the end of the measured window. Not counted: moto, the
    vendors, and this process's polling thread;
  - fairness: 20% of the messages go to the vendor that never answers, 80% to the fast one;
    healthy throughput and latency are compared with the all-healthy run, with the per-host limit
    (DELIVERY_MAX_PER_HOST) and, as a control, with the limit set to the worker's concurrency.
    The calls the worker holds open at the hanging vendor are measured at the vendor.

moto is slow and is not a performance model (see the design brief: SendMessage slows as the queue
grows), so submission is paced: at most --max-outstanding messages are submitted and not yet
COMPLETED at any time. Absolute rates and latencies here are moto's; the numbers that describe
Herald are calls per message, CPU per message and the effect of the hanging vendor.

DELIVERY_TIMEOUT defaults to 20 s (BENCH_DELIVERY_TIMEOUT): the hanging vendor holds about
(hanging messages per second x timeout) calls open, and at the stand-in's pace of about one hanging
message a second, 5 s never fills 32 slots, so the scenario could not show starvation at all.

    .venv/bin/python scripts/bench.py [--messages 300]
        [--scenarios fast,slow,fair,fair-nocap,fast-backlog,fair-backlog]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import queue as queue_module
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devstack import wait_for_port  # scripts/ is on sys.path when this runs as a script

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SCRIPT = str(Path(__file__).resolve())
RESULTS_DIR = ROOT / "bench-results"

HEALTHY_HOST = "127.0.0.1"
HANGING_HOST = "127.0.0.2"  # a different host: the worker's per-host limit keys on the host name
HANG_SECONDS = 3600.0  # "never answers": far past any delivery timeout
MARKER = "BENCH-WORKER "  # prefix of the worker child's replies on its stdout

MOTO_CAVEAT = (
    "AWS here is moto's server (DynamoDB requests serialized) sharing this machine's CPUs with "
    "everything else: it is slow and not a performance model. msg/s and latency are moto-bound; "
    "what describes Herald is AWS calls per message, CPU per message and how the hanging vendor "
    "changes healthy latency and throughput."
)


# -- botocore call counting (used in this process and in the worker child) ----------------------


class CallCounter:
    """Counts API calls (`before-call`, once per call) and HTTP attempts (`before-send`, once per
    attempt, retries included) on the clients it is attached to. With `only_flagged`, only calls
    made by threads inside `counting()` are counted (so the bench's polling is left out)."""

    def __init__(self, *, only_flagged: bool = False) -> None:
        self.only_flagged = only_flagged
        self.calls: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._local = threading.local()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}", self._on_call)
        client.meta.events.register(f"before-send.{service}", self._on_send)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = False

    def _wanted(self) -> bool:
        return not self.only_flagged or getattr(self._local, "on", False)

    @staticmethod
    def _operation(event_name: str) -> str:
        _, service, operation = event_name.split(".", 2)
        return f"{service}.{operation}"

    def _on_call(self, event_name: str, **kwargs: Any) -> None:
        if self._wanted():
            with self._lock:
                self.calls[self._operation(event_name)] += 1
        # Returning None matters: a before-call handler that returns a value replaces the call.

    def _on_send(self, event_name: str, **kwargs: Any) -> None:
        if self._wanted():
            with self._lock:
                self.sends[self._operation(event_name)] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {"calls": dict(self.calls), "sends": dict(self.sends)}


def process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def write_json(path: Path, data: Any) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True))
    partial.replace(path)


# -- the vendor child -------------------------------------------------------------------------------


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


def vendor_child(options: argparse.Namespace) -> int:
    """Serve the three vendors; print their base URLs as one JSON line, then answer "stats" lines
    on stdin with one JSON line each; exit when stdin closes."""
    specs = {
        "fast": (HEALTHY_HOST, 0.0),
        "slow": (HEALTHY_HOST, options.slow_ms / 1000),
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
            [PYTHON, SCRIPT, "--vendor-child", "--slow-ms", str(slow_ms)],
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


# -- the worker child -------------------------------------------------------------------------------


def worker_child(options: argparse.Namespace) -> int:
    """Herald's real worker, as `manage.py run_worker` runs it, plus counters and snapshots."""
    setup_django()
    from notifications import aws
    from notifications.worker import Worker

    counter = CallCounter()
    counter.attach(aws.client("dynamodb"))
    counter.attach(aws.client("sqs"))
    worker = Worker.from_settings(concurrency=options.concurrency)

    outcomes: Counter[str] = Counter()
    outcomes_lock = threading.Lock()
    handle = worker.handle

    def counted_handle(work: Any, **kwargs: Any) -> str:
        try:
            result = handle(work, **kwargs)
        except Exception:
            with outcomes_lock:
                outcomes["exception"] += 1
            raise
        with outcomes_lock:
            outcomes[str(result)] += 1
        return result

    worker.handle = counted_handle  # type: ignore[method-assign]

    def snapshot() -> dict[str, Any]:
        with outcomes_lock:
            seen = dict(outcomes)
        return {
            **counter.snapshot(),
            "outcomes": seen,
            "cpu_seconds": process_cpu_seconds(),
            "wall": time.time(),
            "threads": threading.active_count(),
        }

    emit_lock = threading.Lock()

    def emit(kind: str, data: dict[str, Any]) -> None:
        with emit_lock:
            sys.stdout.write(MARKER + json.dumps({**data, "kind": kind}) + "\n")
            sys.stdout.flush()

    def control() -> None:
        for line in sys.stdin:
            if line.strip() == "snap":
                emit("snap", snapshot())

    def request_stop(signum: int, frame: object) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    threading.Thread(target=control, name="bench-control", daemon=True).start()
    admission = getattr(worker, "admission", None)
    emit(
        "ready",
        {
            **snapshot(),
            "worker_id": worker.worker_id,
            "concurrency": worker.concurrency,
            "max_per_host": getattr(admission, "max_per_host", None),
        },
    )
    drained = worker.run()
    emit("final", {**snapshot(), "drained": drained})
    return 0


# -- orchestration helpers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stop_process(process: subprocess.Popen, timeout: float) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class WorkerProcess:
    """The worker child: asks it for snapshots over stdin, reads its replies from stdout."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        self.replies: queue_module.Queue[dict[str, Any] | None] = queue_module.Queue()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="bench-worker-reader", daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            if line.startswith(MARKER):
                self.replies.put(json.loads(line[len(MARKER) :]))
            else:
                self.log.write(raw)
        self.replies.put(None)

    def reply(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                reply = self.replies.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue_module.Empty:
                raise SystemExit(f"the worker sent no {kind} in {timeout:.0f}s") from None
            if reply is None:
                raise SystemExit(
                    f"the worker exited (code {self.process.poll()}); see {self.log.name}"
                )
            if reply.get("kind") == kind:
                return reply

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            assert self.process.stdin is not None
            self.process.stdin.write(b"snap\n")
            self.process.stdin.flush()
            return self.reply("snap", 30)

    def stop(self, timeout: float) -> None:
        """SIGTERM (the worker stops receiving and drains); killed after `timeout` seconds."""
        with self._lock:
            if self.process.stdin is not None:
                self.process.stdin.close()
            stop_process(self.process, timeout)
            self.log.close()


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of another process from /proc (Linux); None where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def diff_counts(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = set(after) | set(before)
    return {
        k: after.get(k, 0) - before.get(k, 0)
        for k in sorted(keys)
        if after.get(k, 0) - before.get(k, 0)
    }


# -- scenarios --------------------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    title: str
    vendor: str  # the healthy vendor: "fast" or "slow"
    hang_share: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    # Backlog: every message is submitted before the worker starts, and the window is the worker
    # draining them, so the worker (not the submitting side) sets the pace.
    backlog: bool = False


@dataclass
class Submitted:
    index: int
    message_id: str
    hanging: bool


class Progress:
    """Submitted vs completed, shared between the submitters and the poller."""

    def __init__(self, max_outstanding: int) -> None:
        self.max_outstanding = max_outstanding
        self.expected_submitted = 0  # messages that should complete (not the hanging ones)
        self.completed = 0
        self.max_queue_depth = 0
        self.poll_errors = 0
        self.changed = threading.Condition()
        self.done = threading.Event()

    def reserve(self, stop: threading.Event) -> bool:
        with self.changed:
            while self.expected_submitted - self.completed >= self.max_outstanding:
                if stop.is_set():
                    return False
                self.changed.wait(0.5)
            self.expected_submitted += 1
            return True


class Bench:
    def __init__(self, options: argparse.Namespace, env: dict[str, str], workdir: Path) -> None:
        self.options = options
        self.env = env
        self.workdir = workdir
        self.logs = RESULTS_DIR / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.port = int(env["HERALD_STANDIN_PORT"])
        self.producer_id = ""
        self.vendor: VendorProcess | None = None

    # Django-side setup in this process (after the environment is in place).
    def prepare(self) -> None:
        subprocess.run(
            [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env,
            check=True,
        )
        setup_django()
        from notifications.models import Producer

        producer = Producer(name="bench")
        producer.set_new_api_key()
        producer.save()
        self.producer_id = producer.public_id

    def run(self, scenario: Scenario) -> dict[str, Any]:
        from notifications import aws
        from notifications.domain import Status
        from notifications.queue import default_queue
        from notifications.services import Submission, message_submit
        from notifications.store import default_store

        options = self.options
        vendor = self.vendor
        assert vendor is not None
        log = (self.logs / f"standin-{scenario.key}.log").open("wb")
        standin = subprocess.Popen(
            [PYTHON, "scripts/aws_standin.py", "-p", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        worker: WorkerProcess | None = None
        stop = threading.Event()
        try:
            wait_for_port(self.port, standin)
            subprocess.run(
                [PYTHON, "manage.py", "bootstrap"],
                cwd=ROOT,
                env=self.env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            aws.reset_clients()
            counter = CallCounter(only_flagged=True)
            counter.attach(aws.client("dynamodb"))
            counter.attach(aws.client("sqs"))
            store, queue = default_store(), default_queue()
            queue.url  # noqa: B018 -- one-time URL lookup, outside the measurement

            def start_worker() -> tuple[WorkerProcess, dict[str, Any]]:
                process = WorkerProcess(
                    [PYTHON, SCRIPT, "--worker-child", "--concurrency", str(options.concurrency)],
                    {**self.env, **scenario.env},
                    self.logs / f"worker-{scenario.key}.log",
                )
                return process, process.reply("ready", 60)

            if not scenario.backlog:
                worker, ready = start_worker()

            progress = Progress(
                options.messages + 1 if scenario.backlog else options.max_outstanding
            )
            plan = [
                math.floor((i + 1) * scenario.hang_share) > math.floor(i * scenario.hang_share)
                for i in range(options.messages)
            ]
            expected_total = plan.count(False)
            submitted: list[Submitted] = []
            submitted_lock = threading.Lock()
            jobs = iter(enumerate(plan))
            jobs_lock = threading.Lock()
            submit_cpu: list[float] = []
            submit_errors: Counter[str] = Counter()

            def submitter() -> None:
                started = time.thread_time()
                with counter.counting():
                    while not stop.is_set():
                        with jobs_lock:
                            job = next(jobs, None)
                        if job is None:
                            break
                        index, hanging = job
                        if not hanging and not progress.reserve(stop):
                            break
                        base = vendor.urls["hang" if hanging else scenario.vendor]
                        body = json.dumps({"event": "bench", "scenario": scenario.key, "n": index})
                        submission = Submission(
                            target_url=f"{base}/hooks/{index}",
                            method="POST",
                            headers={"X-Bench": scenario.key},
                            body=body,
                            body_is_json=True,
                            metadata={"bench": scenario.key},
                            idempotency_key=f"bench-{scenario.key}-{index}",
                        )
                        try:
                            result = message_submit(
                                producer_id=self.producer_id, submission=submission
                            )
                        except Exception as error:
                            submit_errors[type(error).__name__] += 1
                            continue
                        with submitted_lock:
                            submitted.append(Submitted(index, result.message.id, hanging))
                submit_cpu.append(time.thread_time() - started)

            def poller() -> None:
                # Completion comes from the worker's own count of "completed" outcomes (a
                # COUNT query per status shard costs moto ~200 ms of its serialized DynamoDB
                # time once the table holds a few hundred items). Queue depth, for the report,
                # is a cheap SQS call; neither is counted as Herald's.
                last_depth_check = 0.0
                while not stop.is_set():
                    try:
                        outcomes = worker.snapshot()["outcomes"]
                    except SystemExit:
                        return
                    completed = outcomes.get("completed", 0) - before["outcomes"].get(
                        "completed", 0
                    )
                    with progress.changed:
                        progress.completed = completed
                        progress.changed.notify_all()
                    if completed >= expected_total:
                        progress.done.set()
                        return
                    if time.monotonic() - last_depth_check >= 1.0:
                        last_depth_check = time.monotonic()
                        try:
                            depth = queue.depth()
                        except Exception:
                            progress.poll_errors += 1
                        else:
                            progress.max_queue_depth = max(
                                progress.max_queue_depth,
                                depth["visible"] + depth["in_flight"] + depth["delayed"],
                            )
                    stop.wait(options.poll_interval)

            threads = [
                threading.Thread(target=submitter, name=f"bench-submit-{n}")
                for n in range(options.submitters)
            ]
            if scenario.backlog:  # submit everything, then let the worker drain it
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                worker, ready = start_worker()
            before = worker.snapshot()
            moto_before = proc_cpu_seconds(standin.pid)
            vendors_before = vendor.stats()
            began = time.time()
            poll_thread = threading.Thread(target=poller, name="bench-poller", daemon=True)
            poll_thread.start()
            if not scenario.backlog:
                for thread in threads:
                    thread.start()
            finished = progress.done.wait(options.scenario_timeout)
            after = worker.snapshot()
            moto_after = proc_cpu_seconds(standin.pid)
            vendors_after = vendor.stats()
            ended = time.time()
            stop.set()
            for thread in threads:
                if thread.is_alive() or thread.ident is not None:
                    thread.join()
            poll_thread.join(timeout=30)

            # Per-message outcome, read once at the end (not counted: this thread is unflagged).
            rows = []
            for item in submitted:
                message = store.get(item.message_id)
                if message is None:
                    continue
                completed_at = next(
                    (e.at for e in message.history if e.to_status == Status.COMPLETED), None
                )
                queued_at = next(
                    (e.at for e in message.history if e.to_status == Status.QUEUED), None
                )
                claimed_at = next(
                    (e.at for e in reversed(message.history) if e.to_status == Status.PROCESSING),
                    None,
                )
                rows.append(
                    {
                        "hanging": item.hanging,
                        "status": message.status.value,
                        "attempts": message.attempt_count,
                        "created": parse_time(message.created_at),
                        "completed": parse_time(completed_at) if completed_at else None,
                        "queued": parse_time(queued_at) if queued_at else None,
                        "claimed": parse_time(claimed_at) if claimed_at else None,
                    }
                )
            depth_at_end = queue.depth()
        finally:
            stop.set()
            if worker is not None:
                # Measuring is over: the worker gets a short while to stop, then is killed (an idle
                # long poll, retried after read timeouts, or a hanging call can hold it for long).
                worker.stop(5)
            stop_process(standin, 15)
            log.close()

        moto_cpu = (
            moto_after - moto_before if moto_before is not None and moto_after is not None else None
        )
        return self.summarize(
            scenario,
            rows=rows,
            submitted=len(submitted),
            expected_total=expected_total,
            finished=finished,
            counter=counter,
            submit_cpu=sum(submit_cpu),
            submit_errors=dict(submit_errors),
            before=before,
            after=after,
            ready=ready,
            progress=progress,
            wall=(began, ended),
            depth_at_end=depth_at_end,
            moto_cpu=moto_cpu,
            vendors={
                name: {
                    "requests": vendors_after[name]["requests"] - before_stats["requests"],
                    "max_open_calls": vendors_after[name]["max_open"],
                }
                for name, before_stats in vendors_before.items()
            },
        )

    def summarize(
        self,
        scenario: Scenario,
        *,
        rows: list[dict[str, Any]],
        submitted: int,
        expected_total: int,
        finished: bool,
        counter: CallCounter,
        submit_cpu: float,
        submit_errors: dict[str, int],
        before: dict[str, Any],
        after: dict[str, Any],
        ready: dict[str, Any],
        progress: Progress,
        wall: tuple[float, float],
        depth_at_end: dict[str, int],
        moto_cpu: float | None,
        vendors: dict[str, dict[str, int]],
    ) -> dict[str, Any]:
        healthy = [r for r in rows if not r["hanging"]]
        done = [r for r in healthy if r["completed"] is not None]
        # Backlog runs count from when the worker started, not from acceptance.
        start_of = (
            (lambda r: max(r["created"], wall[0])) if scenario.backlog else (lambda r: r["created"])
        )
        latencies = [1000 * (r["completed"] - start_of(r)) for r in done]
        stages = {
            "accept_to_queued": [
                1000 * (r["queued"] - r["created"]) for r in done if r["queued"] is not None
            ],
            "queued_to_claimed": [
                1000 * (r["claimed"] - r["queued"])
                for r in done
                if r["queued"] is not None and r["claimed"] is not None
            ],
            "claimed_to_completed": [
                1000 * (r["completed"] - r["claimed"]) for r in done if r["claimed"] is not None
            ],
        }
        first_accept = min((start_of(r) for r in rows), default=0.0)
        last_completion = max((r["completed"] for r in done), default=first_accept)
        window = last_completion - first_accept
        delivered = len(done)
        submit_calls = counter.snapshot()
        worker_calls = diff_counts(after["calls"], before["calls"])
        worker_sends = diff_counts(after["sends"], before["sends"])
        worker_cpu = after["cpu_seconds"] - before["cpu_seconds"]
        per = 1 / delivered if delivered else 0.0
        calls_per_message = {
            **{f"submit {op}": n * per for op, n in sorted(submit_calls["calls"].items())},
            **{f"worker {op}": n * per for op, n in sorted(worker_calls.items())},
        }
        hanging = [r for r in rows if r["hanging"]]
        return {
            "scenario": scenario.key,
            "title": scenario.title,
            "healthy_vendor": scenario.vendor,
            "hang_share": scenario.hang_share,
            "backlog": scenario.backlog,
            "messages_submitted": submitted,
            "healthy_expected": expected_total,
            "healthy_delivered": delivered,
            "finished": finished,
            "submit_errors": submit_errors,
            "window_seconds": window,
            "deliveries_per_second": delivered / window if window > 0 else None,
            "latency_ms": {
                "p50": percentile(latencies, 0.50),
                "p99": percentile(latencies, 0.99),
                "max": max(latencies, default=None),
            },
            "latency_stages_ms": {
                name: {"p50": percentile(values, 0.50), "p99": percentile(values, 0.99)}
                for name, values in stages.items()
            },
            "aws_calls": {
                "submit": submit_calls["calls"],
                "submit_http_attempts": submit_calls["sends"],
                "worker": worker_calls,
                "worker_http_attempts": worker_sends,
                "per_delivered_message": calls_per_message,
                "total_per_delivered_message": sum(calls_per_message.values()),
                "submit_per_submitted_message": (
                    sum(submit_calls["calls"].values()) / submitted if submitted else None
                ),
            },
            "cpu_seconds": {
                "submit_threads": submit_cpu,
                "worker_process": worker_cpu,
                "per_1000_delivered": (submit_cpu + worker_cpu) * 1000 * per,
                "submit_per_1000_submitted": submit_cpu * 1000 / submitted if submitted else None,
                "worker_per_1000_delivered": worker_cpu * 1000 * per,
                "not_herald_moto_standin": moto_cpu,
                "not_herald_moto_per_1000_delivered": (
                    moto_cpu * 1000 * per if moto_cpu is not None else None
                ),
            },
            "worker": {
                "outcomes_in_window": diff_counts(after["outcomes"], before["outcomes"]),
                "concurrency": ready.get("concurrency"),
                "max_per_host_honoured": ready.get("max_per_host"),
            },
            "hanging": {
                "messages": len(hanging),
                "attempts": sum(r["attempts"] for r in hanging),
                "statuses": dict(Counter(r["status"] for r in hanging)),
            },
            "vendors_in_window": vendors,
            "queue": {
                "max_depth_seen": progress.max_queue_depth,
                "depth_at_end": depth_at_end,
                "max_outstanding": progress.max_outstanding,
            },
            "bench_wall_seconds": wall[1] - wall[0],
            "stand_in_busy": (
                moto_cpu / (wall[1] - wall[0])
                if moto_cpu is not None and wall[1] > wall[0]
                else None
            ),
        }


# -- report -----------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def per_message(value: float, width: int) -> str:
    text = "<0.01" if 0 < value < 0.005 else f"{value:.2f}"
    return f"{text:>{width}}"


def render(config: dict[str, Any], results: list[dict[str, Any]], fairness: dict | None) -> str:
    lines = []
    out = lines.append
    out(
        f"Herald benchmark: {config['messages']} messages per scenario, worker concurrency "
        f"{config['concurrency']}, DELIVERY_TIMEOUT={config['delivery_timeout']}s, "
        f"DELIVERY_MAX_PER_HOST={config['max_per_host']} "
        f"(worker reports: {config['max_per_host_honoured'] or 'no per-host limit found'})"
    )
    out(
        f"Submit side: notifications.services.message_submit called in-process by "
        f"{config['submitters']} threads (Herald's intake use case: no HTTP server, DRF, auth or "
        f"validation); at most {config['max_outstanding']} healthy messages submitted and not yet "
        f"COMPLETED at a time (hanging ones come on top), to keep moto's SQS queue short."
    )
    out(
        "Latency: message created_at (submit start) -> COMPLETED history timestamp. Worker: one "
        "`manage.py run_worker`-equivalent process (Herald's Worker.from_settings().run())."
    )
    out("")
    header = (
        f"{'scenario':<38} {'delivered':>9} {'msg/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'AWS calls/msg':>13} {'CPU s/1k msgs':>13}"
    )
    out(header)
    out("-" * len(header))
    for r in results:
        cpu = r["cpu_seconds"]
        cpu_text = f"{cpu['per_1000_delivered']:.1f}"
        out(
            f"{r['title']:<38} {r['healthy_delivered']:>4}/{r['healthy_expected']:<4} "
            f"{fmt(r['deliveries_per_second']):>7} {fmt(r['latency_ms']['p50'], 0):>8} "
            f"{fmt(r['latency_ms']['p99'], 0):>8} "
            f"{r['aws_calls']['total_per_delivered_message']:>13.2f} {cpu_text:>13}"
        )
    out("")
    out("CPU seconds per 1,000 delivered messages, by Herald process")
    sub = f"{'scenario':<38} {'submit threads':>14} {'worker process':>14} {'total':>8}"
    out(sub)
    out("-" * len(sub))
    for r in results:
        cpu = r["cpu_seconds"]
        delivered = r["healthy_delivered"] or 1
        out(
            f"{r['title']:<38} {cpu['submit_threads'] * 1000 / delivered:>14.2f} "
            f"{cpu['worker_process'] * 1000 / delivered:>14.2f} {cpu['per_1000_delivered']:>8.2f}"
        )
    moto = ", ".join(
        f"{r['scenario']} {fmt(r['cpu_seconds']['not_herald_moto_per_1000_delivered'])}"
        for r in results
    )
    out(f"For context, NOT Herald: the moto stand-in used CPU s/1k msgs: {moto}")
    out("")
    out("AWS API calls per delivered message, by operation (botocore before-call)")
    operations = sorted({op for r in results for op in r["aws_calls"]["per_delivered_message"]})
    names = [r["scenario"] for r in results]
    width = max(10, *(len(n) + 2 for n in names))
    head = f"{'operation':<40}" + "".join(f"{n:>{width}}" for n in names)
    out(head)
    out("-" * len(head))
    for op in operations:
        out(
            f"{op:<40}"
            + "".join(
                per_message(r["aws_calls"]["per_delivered_message"].get(op, 0.0), width)
                for r in results
            )
        )
    out(
        f"{'total':<40}"
        + "".join(f"{r['aws_calls']['total_per_delivered_message']:>{width}.2f}" for r in results)
    )
    out("")
    out("Worker outcomes in the measured window (Worker.handle results)")
    for r in results:
        outcomes = ", ".join(
            f"{k} {v}" for k, v in sorted(r["worker"]["outcomes_in_window"].items())
        )
        out(f"  {r['scenario']:<11} {outcomes or '-'}")
    out("")
    if fairness:
        out(
            f"Fairness: {fairness['hang_share']:.0%} of the messages go to a vendor that never "
            f"answers ({HANGING_HOST}), the rest to the fast vendor; healthy messages only, "
            f"against the all-healthy run of the same kind: paced runs against (a), backlog runs "
            f"against (e). Paced runs are set by how fast the submitting side (sharing moto) "
            f"can submit, and 20% of what it submits is for the hanging vendor; a backlog run "
            f"submits everything first and measures the worker draining it."
        )
        head = (
            f"{'run':<38} {'msg/s':>6} {'vs base':>7} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'queue wait p99':>14} {'hanging calls open':>18} {'waited':>6} {'deferred':>8} "
            f"{'stand-in busy':>13}"
        )
        out(head)
        out("-" * len(head))
        for base in fairness["baselines"]:
            out(
                f"{base['title']:<38} {fmt(base['per_second']):>6} {'100%':>7} "
                f"{fmt(base['p50_ms'], 0):>7} {fmt(base['p99_ms'], 0):>7} "
                f"{fmt(base['queue_wait_p99_ms'], 0):>14} {'-':>18} {'-':>6} {'-':>8} "
                f"{percent(base['stand_in_busy']):>13}"
            )
        for row in fairness["runs"]:
            open_calls = f"max {row['hanging_calls_open_max']} of {row['concurrency']}"
            out(
                f"{row['title']:<38} {fmt(row['per_second']):>6} {row['ratio']:>7.0%} "
                f"{fmt(row['p50_ms'], 0):>7} {fmt(row['p99_ms'], 0):>7} "
                f"{fmt(row['queue_wait_p99_ms'], 0):>14} {open_calls:>18} {row['waited']:>6} "
                f"{row['deferred']:>8} "
                f"{percent(row['stand_in_busy']):>13}"
            )
        verdicts = ", ".join(
            f"{row['scenario']} {'PASS' if row['ratio'] >= fairness['target'] else 'FAIL'}"
            for row in fairness["runs"]
        )
        out(f"  target: healthy msg/s >= {fairness['target']:.0%} of its base: {verdicts}")
        out(
            "  queue wait = QUEUED -> claimed (PROCESSING): how long a healthy message waited "
            "for a worker slot (and across deferrals). hanging calls open: measured at the hanging "
            "vendor. waited: messages held back by the per-host limit that waited in the worker's "
            "line (no receive count, no AWS calls but batched visibility extensions); deferred: "
            "those re-sent through SQS because the line was full. Backlog runs: latency counts "
            "from the worker's start. "
            "stand-in busy: "
            "moto's CPU time over the window, as a share of one core (it is one Python process): "
            "when it drops below (a)'s, the stand-in was waiting for Herald, not the other way "
            "round. Each deferral costs a GetItem, a SendMessage, a DeleteMessage and a share "
            "of a ReceiveMessage, which the saturated stand-in takes from healthy traffic."
        )
        out(
            f"  Hanging calls open ~ hanging messages/s x DELIVERY_TIMEOUT "
            f"({fairness['delivery_timeout']:g}s here), retries add more. At the stand-in's pace "
            f"(about one hanging message a second) a 5 s timeout does not fill "
            f"{fairness['runs'][0]['concurrency']} slots even without a limit (measured: at most "
            f"16 open), so the bench "
            f"defaults to 20 s; run d (DELIVERY_MAX_PER_HOST = concurrency) shows whether the "
            f"hanging vendor exhausts the slots without the limit."
        )
        out("")
    out(
        "Queue depth (visible + in flight + delayed), max seen while measuring: "
        + ", ".join(f"{r['scenario']} {r['queue']['max_depth_seen']}" for r in results)
    )
    out(
        "CPU counted: the submitting threads of the bench process (time.thread_time) and the whole "
        "worker process (getrusage RUSAGE_SELF, all threads), as deltas over the measured window. "
        "Not counted: the moto stand-in, the vendor process, the bench's polling thread, startup."
    )
    out(
        "AWS calls counted: Herald's submit path and worker only; the bench's own calls "
        "(queue depth, the final GetItem per message) are excluded. Completion is detected "
        "from the worker's own outcome counter, not by polling DynamoDB."
    )
    out("Caveat: " + MOTO_CAVEAT)
    incomplete = [r["scenario"] for r in results if not r["finished"]]
    if incomplete:
        out(f"WARNING: did not finish within the timeout: {', '.join(incomplete)}")
    return "\n".join(lines)


def fairness_summary(
    results: list[dict[str, Any]], target: float, delivery_timeout: float
) -> dict[str, Any] | None:
    by_key = {r["scenario"]: r for r in results}

    def base_of(run: dict[str, Any]) -> dict[str, Any] | None:
        """Each run against the all-healthy run of its own kind (paced or backlog)."""
        base = by_key.get("fast-backlog" if run.get("backlog") else "fast")
        return base if base and base["deliveries_per_second"] else None

    runs = [r for r in results if r["hang_share"] > 0 and base_of(r)]
    if not runs:
        return None
    bases = {base_of(r)["scenario"]: base_of(r) for r in runs}
    rows = []
    for r in runs:
        rate = r["deliveries_per_second"] or 0.0
        rows.append(
            {
                "scenario": r["scenario"],
                "title": r["title"],
                "per_second": rate,
                "ratio": rate / base_of(r)["deliveries_per_second"],
                "baseline": base_of(r)["scenario"],
                "p50_ms": r["latency_ms"]["p50"],
                "p99_ms": r["latency_ms"]["p99"],
                "hanging_calls_open_max": r["vendors_in_window"]["hang"]["max_open_calls"],
                "concurrency": r["worker"]["concurrency"],
                "max_per_host": r["worker"]["max_per_host_honoured"],
                "deferred": r["worker"]["outcomes_in_window"].get("deferred", 0),
                "waited": r["worker"]["outcomes_in_window"].get("waiting", 0),
                "queue_wait_p99_ms": r["latency_stages_ms"]["queued_to_claimed"]["p99"],
                "stand_in_busy": r["stand_in_busy"],
                "hanging_messages": r["hanging"]["messages"],
                "hanging_attempts": r["hanging"]["attempts"],
                "hanging_statuses": r["hanging"]["statuses"],
            }
        )
    return {
        "target": target,
        "hang_share": runs[0]["hang_share"],
        "delivery_timeout": delivery_timeout,
        "baselines": [
            {
                "scenario": base["scenario"],
                "title": base["title"],
                "per_second": base["deliveries_per_second"],
                "p50_ms": base["latency_ms"]["p50"],
                "p99_ms": base["latency_ms"]["p99"],
                "queue_wait_p99_ms": base["latency_stages_ms"]["queued_to_claimed"]["p99"],
                "stand_in_busy": base["stand_in_busy"],
            }
            for base in bases.values()
        ],
        "runs": rows,
    }


# -- main -------------------------------------------------------------------------------------------


def bench_environment(options: argparse.Namespace, workdir: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE"):
        env.pop(name, None)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "HERALD_ENV_FILE": str(workdir / "no-such.env"),  # never the developer's .env
            "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
            "HERALD_STANDIN_PORT": str(port),
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "DYNAMODB_TABLE": "herald-bench",
            "SQS_QUEUE_NAME": "herald-bench",
            "SQS_DLQ_NAME": "herald-bench-dlq",
            "WORKER_CONCURRENCY": str(options.concurrency),
            "DELIVERY_TIMEOUT": str(options.delivery_timeout),
            "DELIVERY_CONNECT_TIMEOUT": str(min(2.0, options.delivery_timeout)),
            "DELIVERY_MAX_PER_HOST": str(options.max_per_host),
            "DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the vendors are on loopback
            "WORKER_SHUTDOWN_GRACE": str(options.delivery_timeout + 5),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def build_scenarios(options: argparse.Namespace) -> list[Scenario]:
    known = {
        "fast": Scenario("fast", "a. fast vendor", "fast"),
        "slow": Scenario("slow", f"b. vendor answers after {options.slow_ms} ms", "slow"),
        "fair": Scenario(
            "fair",
            f"c. {options.hang_share:.0%} hanging, per-host limit {options.max_per_host}",
            "fast",
            hang_share=options.hang_share,
        ),
        "fair-nocap": Scenario(
            "fair-nocap",
            f"d. {options.hang_share:.0%} hanging, per-host limit off",
            "fast",
            hang_share=options.hang_share,
            env={"DELIVERY_MAX_PER_HOST": str(options.concurrency)},
        ),
        "fast-backlog": Scenario(
            "fast-backlog", "e. fast vendor, backlog drained", "fast", backlog=True
        ),
        "fair-backlog": Scenario(
            "fair-backlog",
            f"f. {options.hang_share:.0%} hanging, limit {options.max_per_host}, backlog",
            "fast",
            hang_share=options.hang_share,
            backlog=True,
        ),
    }
    chosen = [name.strip() for name in options.scenarios.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {sorted(known)}")
    return [known[name] for name in chosen]


def env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=int(env_number("BENCH_MESSAGES", 300)))
    parser.add_argument("--concurrency", type=int, default=32, help="worker concurrency")
    parser.add_argument("--slow-ms", type=int, default=200, help="the slow vendor's answer delay")
    parser.add_argument(
        "--delivery-timeout",
        type=float,
        default=env_number("BENCH_DELIVERY_TIMEOUT", 20.0),
        help="DELIVERY_TIMEOUT for the worker (BENCH_DELIVERY_TIMEOUT)",
    )
    parser.add_argument(
        "--max-per-host",
        type=int,
        default=int(env_number("DELIVERY_MAX_PER_HOST", 8)),
        help="DELIVERY_MAX_PER_HOST for the worker",
    )
    parser.add_argument("--hang-share", type=float, default=0.2)
    parser.add_argument("--fairness-target", type=float, default=0.8)
    parser.add_argument("--max-outstanding", type=int, default=100)
    parser.add_argument("--submitters", type=int, default=4, help="submitting threads")
    parser.add_argument(
        "--poll-interval", type=float, default=0.25, help="how often to ask the worker"
    )
    parser.add_argument("--scenario-timeout", type=float, default=None)
    parser.add_argument(
        "--scenarios",
        default=os.environ.get(
            "BENCH_SCENARIOS", "fast,slow,fair,fair-nocap,fast-backlog,fair-backlog"
        ),
        help="comma-separated: fast, slow, fair, fair-nocap",
    )
    parser.add_argument("--out", default=str(RESULTS_DIR / "bench.json"))
    # Internal: the child processes.
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vendor-child", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.scenario_timeout is None:
        options.scenario_timeout = max(120.0, options.messages * 0.6)
    return options


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    if options.worker_child:
        return worker_child(options)
    if options.vendor_child:
        return vendor_child(options)

    RESULTS_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    env = bench_environment(options, workdir, free_port())
    for name in set(os.environ) - set(env):
        del os.environ[name]
    os.environ.update(env)  # this process's Django settings read the same environment
    vendor: VendorProcess | None = None
    try:
        bench = Bench(options, env, workdir)
        bench.prepare()
        vendor = VendorProcess(options.slow_ms, env)
        bench.vendor = vendor
        results = []
        for scenario in build_scenarios(options):
            print(f"running {scenario.title} ...", file=sys.stderr, flush=True)
            results.append(bench.run(scenario))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if vendor is not None:
            vendor.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    honoured = {
        r["worker"]["max_per_host_honoured"] for r in results if r["scenario"] != "fair-nocap"
    }
    config = {
        "messages": options.messages,
        "concurrency": options.concurrency,
        "delivery_timeout": options.delivery_timeout,
        "max_per_host": options.max_per_host,
        "max_per_host_honoured": (
            ", ".join(str(v) for v in sorted(honoured, key=str) if v is not None) or None
        ),
        "slow_ms": options.slow_ms,
        "hang_share": options.hang_share,
        "max_outstanding": options.max_outstanding,
        "submitters": options.submitters,
        "poll_interval": options.poll_interval,
        "vendors": vendor.urls if vendor else None,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    fairness = fairness_summary(results, options.fairness_target, options.delivery_timeout)
    report = render(config, results, fairness)
    print(report)
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "config": config,
        "measured": {
            "submit_side": "notifications.services.message_submit in the bench process (no HTTP)",
            "latency": "created_at -> COMPLETED history entry, Herald's clock",
            "cpu": "submit threads' time.thread_time + worker process getrusage(RUSAGE_SELF)",
            "aws_calls": "botocore before-call (calls) / before-send (HTTP attempts)",
            "caveat": MOTO_CAVEAT,
        },
        "scenarios": results,
        "fairness": fairness,
        "report": report,
    }
    write_json(out, document)
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
