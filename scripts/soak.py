"""`make soak`: Herald at volume under mixed faults, with a verdict at the end.

Starts the embedded stack with the AWS stand-in in fault mode (scripts/soak_stack.py), a local
vendor with healthy, flaky, slow, rate-limiting and permanently failing endpoints
(scripts/soak_vendor.py), submits SOAK_MESSAGES messages through the HTTP API at a steady rate,
part of them through the batch endpoint (scripts/soak_load.py), and meanwhile injects faults on a
schedule drawn from SOAK_SEED (scripts/soak_faults.py): workers killed with SIGKILL and stopped
with SIGTERM mid-flight, the reconcile loop killed, the stand-in throttling or failing a share of
DynamoDB and SQS requests and refusing connections for a few seconds at a time. Then the faults
stop, every process runs again, and it waits for every accepted message to be COMPLETED or FAILED.

It prints one table (scripts/soak_report.py) and writes `soak-results/<run>/soak.json` with the
figures, the vendor's calls and every process's log. The exit status is 1 when a message was lost
(not terminal by SOAK_DRAIN_TIMEOUT) or failed unexpectedly, 0 otherwise.

    SOAK_MESSAGES=300 SOAK_SEED=7 .venv/bin/python scripts/soak.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from soak_faults import KINDS as SCHEDULED_KINDS
from soak_faults import FaultRunner, schedule
from soak_load import Submitter, plan_messages
from soak_report import (
    classify,
    delivered_messages,
    duplicate_calls,
    log_searcher,
    print_table,
)
from soak_stack import ROOT, Stack

RESULTS = ROOT / "soak-results"
FAULT_KINDS = (*SCHEDULED_KINDS, "aws_throttle", "aws_error")
TERMINAL = {"COMPLETED", "FAILED"}


def env_number(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def parse_options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--messages", type=int, default=int(env_number("SOAK_MESSAGES", 4000)))
    add("--seed", type=int, default=int(env_number("SOAK_SEED", 1)))
    add("--rate", type=float, default=env_number("SOAK_RATE", 8), help="messages a second")
    add("--workers", type=int, default=int(env_number("SOAK_WORKERS", 3)))
    add("--concurrency", type=int, default=int(env_number("SOAK_CONCURRENCY", 16)))
    add("--batch-share", type=float, default=env_number("SOAK_BATCH_SHARE", 0.5))
    add("--max-outstanding", type=int, default=int(env_number("SOAK_MAX_OUTSTANDING", 300)))
    add("--throttle-share", type=float, default=env_number("SOAK_AWS_THROTTLE_SHARE", 0.02))
    add("--error-share", type=float, default=env_number("SOAK_AWS_ERROR_SHARE", 0.01))
    add("--drain-timeout", type=float, default=env_number("SOAK_DRAIN_TIMEOUT", 900))
    add(
        "--faults",
        default=os.environ.get("SOAK_FAULTS") or "all",
        help=f"all, none, or a comma-separated list of {', '.join(FAULT_KINDS)}",
    )
    options = parser.parse_args(argv)
    wanted = options.faults.replace(" ", "")
    chosen = (
        set(FAULT_KINDS)
        if wanted == "all"
        else set()
        if wanted == "none"
        else set(wanted.split(","))
    )
    if chosen - set(FAULT_KINDS):
        parser.error(f"unknown fault kinds: {sorted(chosen - set(FAULT_KINDS))}")
    options.fault_kinds = chosen
    return options


def setup_django(stack: Stack) -> None:
    """This process reads the message table at the end, through Herald's own store."""
    sys.path.insert(0, str(ROOT))
    os.environ.update({k: v for k, v in stack.env.items() if k.startswith(("AWS_", "HERALD_"))})
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    import django

    django.setup()


def wait_for_terminal(ids: list[str], timeout: float) -> dict[str, str | None]:
    """Poll (100 status reads a request) until every message is COMPLETED or FAILED, or until
    `timeout`; returns the last status seen of each (None: not found)."""
    from notifications.store import default_store

    store = default_store()
    seen: dict[str, str | None] = dict.fromkeys(ids)
    pending = list(ids)
    deadline = time.monotonic() + timeout
    while pending:
        for start in range(0, len(pending), 100):
            chunk = pending[start : start + 100]
            statuses = store.current_statuses(chunk)
            seen.update({message_id: statuses.get(message_id) for message_id in chunk})
        pending = [message_id for message_id in pending if seen[message_id] not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(3)
    return {message_id: str(status) if status else None for message_id, status in seen.items()}


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = RESULTS / f"{stamp}-seed{options.seed}"
    run_dir.mkdir(parents=True)
    stack = Stack(
        run_dir, workers=options.workers, concurrency=options.concurrency, seed=options.seed
    )
    print(f"soak: {options.messages} messages, seed {options.seed}; logs in {run_dir}", flush=True)
    try:
        stack.start()
        setup_django(stack)
        summary = soak(stack, options, run_dir)
    except KeyboardInterrupt:
        print("\ninterrupted; stopping the stack", flush=True)
        return 130
    finally:
        stack.stop()
    print_table(summary)
    print(f"  details: {run_dir / 'soak.json'}")
    return 0 if summary["passed"] else 1


def soak(stack: Stack, options: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    planned, sends = plan_messages(
        options.messages,
        seed=options.seed,
        vendor_port=stack.vendor_port,
        batch_share=options.batch_share,
    )

    def finished_at_vendor() -> int:
        return requests.get(f"{stack.vendor_url}/progress", timeout=10).json()["finished"]

    submitter = Submitter(
        api_url=stack.api_url,
        api_key=stack.api_key,
        planned=planned,
        sends=sends,
        rate=options.rate,
        max_outstanding=options.max_outstanding,
        finished_at_vendor=finished_at_vendor,
    )
    horizon = 2 * options.messages / options.rate
    events = schedule(
        seed=options.seed,
        horizon=horizon,
        kinds=options.fault_kinds,
        workers=options.workers,
    )
    runner = FaultRunner(stack, events)
    kinds = options.fault_kinds
    stack.set_aws_faults(
        {
            "dynamodb_throttle": options.throttle_share if "aws_throttle" in kinds else 0,
            "sqs_throttle": options.throttle_share if "aws_throttle" in kinds else 0,
            "dynamodb_error": options.error_share if "aws_error" in kinds else 0,
            "sqs_error": options.error_share if "aws_error" in kinds else 0,
        }
    )
    stop_faults = threading.Event()
    fault_thread = threading.Thread(target=runner.run, args=(stop_faults,), daemon=True)
    load_started = time.monotonic()
    fault_thread.start()
    progress = threading.Event()
    threading.Thread(target=report_progress, args=(submitter, progress), daemon=True).start()
    submitter.run(threading.Event())
    load_seconds = time.monotonic() - load_started
    progress.set()

    # Quiet: no more faults, every process up again, then wait for every accepted message.
    stop_faults.set()
    fault_thread.join()
    stack.set_aws_faults(
        dict.fromkeys(("dynamodb_throttle", "sqs_throttle", "dynamodb_error", "sqs_error"), 0)
    )
    while stack.aws_fault_report()["outage_remaining"] > 0:
        time.sleep(0.5)
    runner.settle()
    drain_started = time.monotonic()
    accepted = {submitter.accepted[i]: planned[i].kind for i in sorted(submitter.accepted)}
    print(f"load done in {load_seconds:.0f} s; waiting for {len(accepted)} messages", flush=True)
    statuses = wait_for_terminal(list(accepted), options.drain_timeout)
    drain_seconds = time.monotonic() - drain_started
    return summarise(
        options=options,
        stack=stack,
        run_dir=run_dir,
        submitter=submitter,
        runner=runner,
        accepted=accepted,
        statuses=statuses,
        load_seconds=load_seconds,
        drain_seconds=drain_seconds,
    )


def report_progress(submitter: Submitter, done: threading.Event) -> None:
    while not done.wait(30):
        with submitter.lock:
            accepted = len(submitter.accepted)
        print(f"  … {accepted} accepted, {submitter.outstanding} not finished yet", flush=True)


def summarise(
    *,
    options: argparse.Namespace,
    stack: Stack,
    run_dir: Path,
    submitter: Submitter,
    runner: FaultRunner,
    accepted: dict[str, str],
    statuses: dict[str, str | None],
    load_seconds: float,
    drain_seconds: float,
) -> dict[str, Any]:
    from notifications.store import default_store

    calls = requests.get(f"{stack.vendor_url}/calls", timeout=60).json()
    aws_faults = stack.aws_fault_report()["counts"]
    expected = {"permanent": "FAILED"}
    completed = sum(1 for status in statuses.values() if status == "COMPLETED")
    failed_expected = sum(
        1 for i, s in statuses.items() if s == "FAILED" and accepted[i] == "permanent"
    )
    unexpected = [
        i
        for i, s in statuses.items()
        if s in TERMINAL and s != expected.get(accepted[i], "COMPLETED")
    ]
    lost = [i for i, s in statuses.items() if s not in TERMINAL]

    repeated = duplicate_calls(call for call in calls if call["id"] in accepted)
    searcher = log_searcher([worker.log for worker in stack.workers])
    store = default_store()
    duplicates = []
    evidence = {}
    for message_id, from_success in sorted(repeated.items()):
        message, _ = store.get_full(message_id)
        history = list(message.history) if message else []
        duplicates.append(classify(message_id, from_success, history, runner.kills, searcher))
        evidence[message_id] = {
            "calls": from_success,
            "history": [entry.as_dict() for entry in history],
        }
    delivered = len(delivered_messages(call for call in calls if call["id"] in accepted))
    duplicate_count = sum(d.calls for d in duplicates)
    by_cause: dict[str, int] = {}
    for duplicate in duplicates:
        by_cause[duplicate.cause] = by_cause.get(duplicate.cause, 0) + duplicate.calls

    faults = {
        kind: runner.counts.get(kind, 0) for kind in SCHEDULED_KINDS if kind in options.fault_kinds
    }
    faults.update(
        {
            kind: aws_faults.get(kind, 0)
            for kind in ("dynamodb_throttle", "dynamodb_error", "sqs_throttle", "sqs_error")
        }
    )
    summary = {
        "messages": options.messages,
        "seed": options.seed,
        "workers": options.workers,
        "concurrency": options.concurrency,
        "rate": options.rate,
        "submit_rate": len(accepted) / load_seconds if load_seconds else 0.0,
        "batch_share": options.batch_share,
        "fault_kinds": sorted(options.fault_kinds),
        "outcome": {
            "accepted": len(accepted),
            "completed": completed,
            "failed_expected": failed_expected,
            "failed_unexpectedly": len(unexpected),
            "not_terminal": len(lost),
            "not_accepted": len(submitter.refused),
        },
        "duplicates": {
            "calls": duplicate_count,
            "messages": len(duplicates),
            "delivered": delivered,
            "share": duplicate_count / delivered if delivered else 0.0,
            "by_cause": dict(sorted(by_cause.items(), key=lambda pair: -pair[1])),
            "each": [{**d.__dict__, **evidence[d.message_id]} for d in duplicates],
        },
        "faults": faults,
        "outage_seconds": aws_faults.get("outage_ms", 0) / 1000,
        "outage_dropped_requests": aws_faults.get("outage_dropped_requests", 0),
        "sigterm_exits": runner.sigterm_exits,
        "kills": [kill.__dict__ for kill in runner.kills],
        "api_answers": dict(submitter.answers),
        "refused": {str(k): v for k, v in submitter.refused.items()},
        "failed_unexpectedly": {i: statuses[i] for i in unexpected},
        "lost": {i: statuses[i] for i in lost},
        "load_seconds": load_seconds,
        "paused_seconds": submitter.paused_seconds,
        "drain_seconds": drain_seconds,
        "passed": not lost and not unexpected,
    }
    (run_dir / "soak.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    (run_dir / "vendor-calls.json").write_text(json.dumps(calls))
    return summary


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
