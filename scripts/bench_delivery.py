"""The delivery scenarios: messages submitted through Herald's intake use case in this process and
delivered by one Herald worker process to the local vendors, on a fresh stand-in each; and the
floor, the same lifecycle made by a plain script (scripts/bench_floor.py).

In this process, `notifications.services.message_submit` is called from a few threads (Herald's
intake without HTTP, DRF, authentication or validation), and completion is watched through the
worker's own count of "completed" outcomes (polling DynamoDB would load the stand-in).

A *units* scenario runs the fast-vendor lifecycle twice for one body size: a plain pass (CPU,
calls, latency) and a metered pass, with the capacity meter (bench_units) attached to the clients
of both Herald processes; the meter's extra reads would distort the CPU figures, so those of the
metered pass are not reported.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench_measure import (
    CallCounter,
    diff_counts,
    parse_time,
    percentile,
    proc_cpu_seconds,
)
from bench_setup import BENCH_SCRIPT, LOGS_DIR, PYTHON, ROOT, standin
from bench_units import CapacityMeter, add_totals, subtract_totals, summarize_units
from bench_vendor import VendorProcess
from bench_worker import WorkerProcess


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
    body_bytes: int = 100
    # A units scenario: a plain pass, then a metered one (see the module's docstring).
    units: bool = False
    metered: bool = False  # this pass carries the capacity meter
    kind: str = "delivery"


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


def padded_body(fields: dict[str, Any], size: int) -> str:
    """A JSON body of about `size` bytes: `fields` plus padding."""
    bare = json.dumps({**fields, "pad": ""}, separators=(",", ":"))
    return json.dumps({**fields, "pad": "x" * max(0, size - len(bare))}, separators=(",", ":"))


class DeliveryBench:
    def __init__(self, options: Any, env: dict[str, str], workdir: Path) -> None:
        self.options = options
        self.env = env
        self.workdir = workdir
        self.producer_id = ""
        self.vendor: VendorProcess | None = None

    # Django-side setup in this process (after the environment is in place).
    def prepare(self) -> None:
        from notifications.models import Producer

        producer = Producer(name="bench")
        producer.set_new_api_key()
        producer.save()
        self.producer_id = producer.public_id

    def run_units(self, scenario: Scenario) -> dict[str, Any]:
        """A plain pass and a metered pass of the same scenario; the plain pass's figures with
        the metered pass's units."""
        plain = self.run(scenario)
        print(f"  ... {scenario.key}: metered pass", file=sys.stderr, flush=True)
        metered = self.run(replace(scenario, metered=True))
        plain["units"] = metered["units"]
        plain["units_pass"] = {
            "healthy_delivered": metered["healthy_delivered"],
            "finished": metered["finished"],
            "aws_calls": metered["aws_calls"],
            "note": "CPU and latency of this pass are not reported: the meter's reads change them",
        }
        return plain

    def run(self, scenario: Scenario) -> dict[str, Any]:
        from notifications import aws
        from notifications.domain import Status
        from notifications.queue import default_queue
        from notifications.services import Submission, message_submit
        from notifications.store import default_store

        options = self.options
        vendor = self.vendor
        assert vendor is not None
        name = f"{scenario.key}{'-metered' if scenario.metered else ''}"
        lock_path = str(self.workdir / f"meter-{name}.lock") if scenario.metered else None
        worker: WorkerProcess | None = None
        stop = threading.Event()
        with standin(self.env, name) as standin_process:
            try:
                aws.reset_clients()
                counter = CallCounter(only_flagged=True)
                meter = (
                    CapacityMeter(
                        only_flagged=True,
                        lock_path=lock_path,
                        status_attribute=options.status_attribute,
                    )
                    if scenario.metered
                    else None
                )
                for service in ("dynamodb", "sqs"):
                    counter.attach(aws.client(service))
                    if meter is not None:
                        meter.attach(aws.client(service))
                store, queue = default_store(), default_queue()
                queue.url  # noqa: B018 -- one-time URL lookup, outside the measurement

                def start_worker() -> tuple[WorkerProcess, dict[str, Any]]:
                    command = [
                        PYTHON,
                        BENCH_SCRIPT,
                        "--worker-child",
                        "--concurrency",
                        str(options.concurrency),
                        "--status-attribute",
                        options.status_attribute,
                    ]
                    if lock_path:
                        command += ["--meter-lock", lock_path]
                    process = WorkerProcess(
                        command, {**self.env, **scenario.env}, LOGS_DIR / f"worker-{name}.log"
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
                    metering = meter.counting() if meter is not None else nullcontext()
                    with counter.counting(), metering:
                        while not stop.is_set():
                            with jobs_lock:
                                job = next(jobs, None)
                            if job is None:
                                break
                            index, hanging = job
                            if not hanging and not progress.reserve(stop):
                                break
                            base = vendor.urls["hang" if hanging else scenario.vendor]
                            fields = {"event": "bench", "scenario": scenario.key, "n": index}
                            submission = Submission(
                                target_url=f"{base}/hooks/{index}",
                                method="POST",
                                headers={"X-Bench": scenario.key},
                                body=padded_body(fields, scenario.body_bytes),
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
                    # time once the table holds a few hundred items). Queue depth, for the
                    # report, is a cheap SQS call; neither is counted as Herald's.
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
                moto_before = proc_cpu_seconds(standin_process.pid)
                vendors_before = vendor.stats()
                began = time.time()
                poll_thread = threading.Thread(target=poller, name="bench-poller", daemon=True)
                poll_thread.start()
                if not scenario.backlog:
                    for thread in threads:
                        thread.start()
                finished = progress.done.wait(options.scenario_timeout)
                after = worker.snapshot()
                moto_after = proc_cpu_seconds(standin_process.pid)
                vendors_after = vendor.stats()
                ended = time.time()
                stop.set()
                for thread in threads:
                    if thread.is_alive() or thread.ident is not None:
                        thread.join()
                poll_thread.join(timeout=30)
                units = self._units(meter, before, after, expected_total)

                # Per-message outcome, read once at the end (not counted: this thread is
                # unflagged).
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
                        (
                            e.at
                            for e in reversed(message.history)
                            if e.to_status == Status.PROCESSING
                        ),
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
                    # Measuring is over: the worker gets a short while to stop, then is killed (an
                    # idle long poll, retried after read timeouts, or a hanging call can hold it
                    # for long).
                    worker.stop(5)

        moto_cpu = (
            moto_after - moto_before if moto_before is not None and moto_after is not None else None
        )
        result = self.summarize(
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
        if units is not None:
            delivered = result["healthy_delivered"]
            result["units"] = {**units, **summarize_units(units["totals"], delivered)}
        return result

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
            "kind": scenario.kind,
            "body_bytes": scenario.body_bytes,
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

    @staticmethod
    def _units(
        meter: CapacityMeter | None,
        before: dict[str, Any],
        after: dict[str, Any],
        expected: int,
    ) -> dict[str, Any] | None:
        """The meter's totals over the window: the submitting threads' plus the worker's."""
        if meter is None:
            return None
        mine = meter.snapshot()
        worker_totals = subtract_totals(after["units"]["totals"], before["units"]["totals"])
        largest = {**after["units"]["largest_item_bytes"]}
        for table, size in mine["largest_item_bytes"].items():
            largest[table] = max(size, largest.get(table, 0))
        return {
            "totals": add_totals(mine["totals"], worker_totals),
            "largest_item_bytes": largest,
            "item_size_rules": meter.item_size_source,
        }

    def run_floor(self, scenario: Scenario) -> dict[str, Any]:
        """The floor script against a fresh stand-in and the fast vendor (its own table and
        queue); its CPU is its own process's over its measured window."""
        options = self.options
        vendor = self.vendor
        assert vendor is not None
        with standin(self.env, scenario.key, bootstrap=False) as standin_process:
            moto_before = proc_cpu_seconds(standin_process.pid)
            completed = subprocess.run(
                [
                    PYTHON,
                    str(ROOT / "scripts" / "bench_floor.py"),
                    "--endpoint",
                    self.env["AWS_ENDPOINT_URL"],
                    "--vendor",
                    vendor.urls["fast"],
                    "--messages",
                    str(options.messages),
                    "--body-bytes",
                    str(scenario.body_bytes),
                    "--submitters",
                    str(options.submitters),
                    "--concurrency",
                    str(options.concurrency),
                    "--max-outstanding",
                    str(options.max_outstanding),
                    "--timeout-total",
                    str(options.scenario_timeout),
                ],
                cwd=ROOT,
                env=self.env,
                check=True,
                capture_output=True,
                text=True,
            )
            moto_after = proc_cpu_seconds(standin_process.pid)
        figures = json.loads(completed.stdout.strip().splitlines()[-1])
        delivered = figures["delivered"]
        per = 1000 / delivered if delivered else 0.0
        calls = figures["calls"]
        return {
            "scenario": scenario.key,
            "title": scenario.title,
            "kind": "floor",
            "body_bytes": figures["body_bytes"],
            "delivered": delivered,
            "finished": figures["finished"],
            "errors": figures["errors"],
            "conditions_not_met": figures["conditions_not_met"],
            "window_seconds": figures["wall_seconds"],
            "deliveries_per_second": delivered / figures["wall_seconds"]
            if figures["wall_seconds"]
            else None,
            "cpu_seconds": {
                "process": figures["cpu_seconds"],
                "per_1000_delivered": figures["cpu_seconds"] * per,
                "not_herald_moto_per_1000_delivered": (
                    (moto_after - moto_before) * per
                    if moto_before is not None and moto_after is not None
                    else None
                ),
            },
            "aws_calls": {
                "total": calls,
                "per_delivered_message": {
                    op: n / delivered for op, n in sorted(calls.items()) if delivered
                },
                "total_per_delivered_message": sum(calls.values()) / delivered
                if delivered
                else None,
            },
            "threads": figures["threads"],
        }


def floor_ratio(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Herald's CPU per delivered message against the floor's, both measured in this run: the
    fast-vendor scenario (or, without it, the plain pass of the units scenario of the floor's body
    size)."""
    floors = [r for r in results if r.get("kind") == "floor" and r["delivered"]]
    fasts = [r for r in results if r["scenario"] == "fast" and r["healthy_delivered"]]
    if len(floors) > 1 and len(fasts) == len(floors):
        # Pairs run one after the other (--floor-pairs): the median of their ratios.
        pairs = [
            (h["cpu_seconds"]["per_1000_delivered"], f["cpu_seconds"]["per_1000_delivered"])
            for h, f in zip(fasts, floors, strict=True)
        ]
        ratios = sorted(h / f for h, f in pairs if f)
        herald_cpu = statistics.median(h for h, _ in pairs)
        floor_cpu = statistics.median(f for _, f in pairs)
        return {
            "herald_scenario": "fast",
            "herald_cpu_per_1000": herald_cpu,
            "floor_cpu_per_1000": floor_cpu,
            "ratio": statistics.median(ratios) if ratios else None,
            "pairs": [{"herald": h, "floor": f} for h, f in pairs],
            "herald_calls_per_message": statistics.median(
                r["aws_calls"]["total_per_delivered_message"] for r in fasts
            ),
            "floor_calls_per_message": statistics.median(
                r["aws_calls"]["total_per_delivered_message"] for r in floors
            ),
            "target": 1.3,
        }
    floor = floors[0] if floors else None
    if floor is None:
        return None
    herald = next((r for r in results if r["scenario"] == "fast"), None)
    if herald is None:
        herald = next(
            (
                r
                for r in results
                if r.get("kind") == "delivery"
                and r.get("units")
                and abs(r["body_bytes"] - floor["body_bytes"]) <= 20
            ),
            None,
        )
    if herald is None or not herald["healthy_delivered"]:
        return None
    herald_cpu = herald["cpu_seconds"]["per_1000_delivered"]
    floor_cpu = floor["cpu_seconds"]["per_1000_delivered"]
    return {
        "herald_scenario": herald["scenario"],
        "herald_cpu_per_1000": herald_cpu,
        "floor_cpu_per_1000": floor_cpu,
        "ratio": herald_cpu / floor_cpu if floor_cpu else None,
        "herald_calls_per_message": herald["aws_calls"]["total_per_delivered_message"],
        "floor_calls_per_message": floor["aws_calls"]["total_per_delivered_message"],
        "target": 1.3,
    }
