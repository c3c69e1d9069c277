"""The soak's verdict: what became of every accepted message, the vendor calls beyond the first
success (duplicates) and where each came from, the faults injected, and the table that says it.

Where a duplicate comes from is read off the record: the vendor's first successful call for the
message, the claim it was made under (the message's history names the claiming worker, and the
worker id carries its pid), and what ended that claim:
- the claiming worker was killed (SIGKILL) after the vendor received the call and before an outcome
  was stored: at-least-once delivery cannot avoid this one without the vendor's help;
- it was stopped by SIGTERM and its grace period ran out mid-call;
- it lived on, but its outcome was not stored (an AWS fault), so the lease expired and another
  worker, or the reconciler, took the message over: its log names the fault;
- Herald stored another outcome than delivered although the vendor answered 2xx (an answer
  after the deadline, a connection cut after the answer).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soak_faults import Kill

if TYPE_CHECKING:
    from notifications.domain import HistoryEntry

CAUSES = {
    "killed": "SIGKILL after the vendor got the call, before the outcome was stored",
    "sigterm": "SIGTERM, grace period over mid-call",
    "not_stored": "outcome not stored (AWS fault), lease expired, taken over",
    "not_seen": "vendor answered 2xx, Herald stored a retry (e.g. a timeout)",
    "other": "other (see soak.json)",
}
FAULT_LABELS = {
    "worker_sigkill": "worker SIGKILL (restarted)",
    "worker_sigterm": "worker SIGTERM mid-flight (restarted)",
    "reconcile_kill": "reconcile loop SIGKILL (restarted)",
    "aws_outage": "stand-in outage (connections refused)",
    "dynamodb_throttle": "DynamoDB ProvisionedThroughputExceeded",
    "dynamodb_error": "DynamoDB 500 InternalServerError",
    "sqs_throttle": "SQS ThrottlingException",
    "sqs_error": "SQS 500 InternalError",
}


@dataclass(frozen=True)
class Duplicate:
    message_id: str
    calls: int  # calls beyond the first success
    cause: str
    detail: str


def duplicate_calls(calls: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per message, its calls from the first success on (the first success first), for the
    messages that had calls after their first success."""
    by_message: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call in calls:
        by_message[call["id"]].append(call)
    found = {}
    for message_id, made in by_message.items():
        made.sort(key=lambda call: call["received"])
        first = next((n for n, call in enumerate(made) if 200 <= call["status"] < 300), None)
        if first is not None and first + 1 < len(made):
            found[message_id] = made[first:]
    return found


def delivered_messages(calls: Iterable[dict[str, Any]]) -> set[str]:
    return {call["id"] for call in calls if 200 <= call["status"] < 300}


def _seconds(entry: HistoryEntry) -> float:
    """A history entry's time as the vendor records its calls (Unix seconds)."""
    moment = datetime.strptime(entry.at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return moment.timestamp()


def _pid(actor: str) -> int | None:
    match = re.fullmatch(r"worker:.*:(\d+)", actor)
    return int(match.group(1)) if match else None


def classify(
    message_id: str,
    from_success: list[dict[str, Any]],
    history: list[HistoryEntry],
    kills: list[Kill],
    log_lines: Callable[[str], list[tuple[float, str]]],
) -> Duplicate:
    """Why the vendor was called again after `from_success[0]`, its first success."""
    success = from_success[0]
    beyond = len(from_success) - 1
    claims = [
        n
        for n, entry in enumerate(history)
        if entry.to_status == "PROCESSING" and _seconds(entry) <= success["received"]
    ]
    if not claims:
        return Duplicate(message_id, beyond, "other", "no claim before the first success")
    claim = history[claims[-1]]
    pid = _pid(claim.actor)
    ended = history[claims[-1] + 1] if claims[-1] + 1 < len(history) else None
    ended_at = _seconds(ended) if ended else float("inf")
    if ended is not None and ended.actor == claim.actor and ended.to_status == "QUEUED":
        return Duplicate(message_id, beyond, "not_seen", f"{ended.to_status}: {ended.reason}")
    for at, line in log_lines(message_id):
        if success["received"] - 1 <= at <= ended_at and "left for later" in line:
            return Duplicate(message_id, beyond, "not_stored", line)
    for kill in kills:
        if kill.pid == pid and success["received"] - 1 <= kill.at <= ended_at:
            cause = "killed" if kill.kind == "worker_sigkill" else "sigterm"
            written = "answer written" if success["written"] else "answer not written"
            return Duplicate(message_id, beyond, cause, f"{kill.kind} of {pid}; {written}")
    ending = f"{ended.actor}: {ended.reason}" if ended else "claim never ended"
    if ended is not None and ended.from_status == "PROCESSING":  # taken over, lease expired
        return Duplicate(message_id, beyond, "not_stored", f"no log line; {ending}")
    return Duplicate(message_id, beyond, "other", f"{claim.actor}; {ending}")


def _log_time(line: str) -> float:
    """When a log line was written (text format: local time, milliseconds)."""
    try:
        stamp, millis = line[:23].split(",")
        return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000
    except ValueError:
        return 0.0


def log_searcher(logs: list[Path]) -> Callable[[str], list[tuple[float, str]]]:
    """Lines of the workers' logs that say why a message's outcome was not stored, with their
    times, by message id."""
    wanted = ("left for later", "lease lost", "not stored", "failed")
    lines = [
        line.strip()
        for log in logs
        if log.exists()
        for line in log.read_text(errors="replace").splitlines()
        if any(word in line for word in wanted)
    ]
    index: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in lines:
        for message_id in re.findall(r"msg_[a-z2-7]{26}", line):
            index[message_id].append((_log_time(line), line))
    return lambda message_id: index.get(message_id, [])


def print_table(summary: dict[str, Any]) -> None:
    width = 66

    def row(label: str, value: Any, note: str = "") -> None:
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        print(f"  {label:<{width}} {shown:>10}  {note}".rstrip())

    outcome = summary["outcome"]
    duplicates = summary["duplicates"]
    print()
    print(
        f"Herald soak: {summary['messages']:,} messages, seed {summary['seed']}, "
        f"{summary['workers']} workers x {summary['concurrency']}, "
        f"{summary['submit_rate']:.1f} msg/s submitted ({summary['batch_share']:.0%} in batches)"
    )
    row("accepted", outcome["accepted"])
    row("completed", outcome["completed"])
    row("failed as expected (the permanent vendor)", outcome["failed_expected"])
    row("failed unexpectedly", outcome["failed_unexpectedly"])
    row("not terminal (lost)", outcome["not_terminal"])
    if outcome["not_accepted"]:
        row("not accepted (the API refused, after retries)", outcome["not_accepted"])
    share = f"{duplicates['share']:.2%} of {duplicates['delivered']:,} delivered"
    row("duplicates: vendor calls beyond the first success", duplicates["calls"], share)
    row("  messages called again after a success", duplicates["messages"])
    for cause, count in duplicates["by_cause"].items():
        row(f"    {CAUSES[cause]}", count)
    print("  faults injected")
    for kind, count in summary["faults"].items():
        note = ""
        if kind == "aws_outage":
            note = f"{summary['outage_seconds']:.1f} s in all"
        if kind == "worker_sigterm" and summary["sigterm_exits"]:
            codes = Counter(str(e["code"]) for e in summary["sigterm_exits"])
            note = "exit codes " + ", ".join(f"{c}: {n}" for c, n in sorted(codes.items()))
        row(f"    {FAULT_LABELS.get(kind, kind)}", count, note)
    row(
        "time to drain (faults over, every process up: to all terminal)",
        f"{summary['drain_seconds']:.1f} s",
    )
    row("load phase", f"{summary['load_seconds']:.0f} s")
    print(f"  result: {'PASS' if summary['passed'] else 'FAIL'}")
