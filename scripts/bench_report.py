"""The bench's text report: one section per kind of scenario (delivery, units and bill, floor,
API through HTTP, listings), from the results the scenarios return."""

from __future__ import annotations

from typing import Any

from bench_pricing import bill_per_million_messages, describe_prices
from bench_units import iter_tables
from bench_vendor import HANGING_HOST

MOTO_CAVEAT = (
    "AWS here is moto's server (DynamoDB requests serialized) sharing this machine's CPUs with "
    "everything else: it is slow and not a performance model. msg/s and latency are moto-bound; "
    "what describes Herald is AWS calls per message, CPU per message and how the hanging vendor "
    "changes healthy latency and throughput."
)


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def per_message(value: float, width: int) -> str:
    text = "<0.01" if 0 < value < 0.005 else f"{value:.2f}"
    return f"{text:>{width}}"


def render_delivery(
    config: dict[str, Any], results: list[dict[str, Any]], fairness: dict | None
) -> str:
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


def size_label(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KB"
    return f"{size} B"


def render_units(results: list[dict[str, Any]]) -> str:
    """Units per delivered message by body size, per status change, and the bill they make."""
    runs = [r for r in results if r.get("units")]
    if not runs:
        return ""
    lines: list[str] = []
    out = lines.append
    width = 12
    sizes = [size_label(r["body_bytes"]) for r in runs]
    units = [r["units"] for r in runs]

    def row(label: str, values: list[float | None], digits: int = 2) -> None:
        out(f"  {label:<44}" + "".join(f"{fmt(v, digits):>{width}}" for v in values))

    out(
        "DynamoDB units and SQS requests per delivered message (metered passes: computed from item "
        "sizes by DynamoDB's documented rules, not moto's ConsumedCapacity; item sizes by "
        f"{units[0]['item_size_rules']}). The meter's own reads slow the pass, so its CPU and "
        "latency are not reported; CPU comes from a plain pass of the same scenario."
    )
    out(f"  {'body size':<44}" + "".join(f"{s:>{width}}" for s in sizes))
    out("  " + "-" * (44 + width * len(sizes)))
    targets = list(dict.fromkeys(name for u in units for name in iter_tables(u)))
    out("  write units per message")
    for name in targets:
        row(f"  {name}", [u["write_units_per_message"].get(name, 0.0) for u in units])
    row("  total", [u["write_units_per_message_total"] for u in units])
    row("  of which in status changes", [u["status_change_write_units_per_message"] for u in units])
    out("  read units per message")
    for name in targets:
        row(f"  {name}", [u["read_units_per_message"].get(name, 0.0) for u in units])
    row("  total", [u["read_units_per_message_total"] for u in units])
    row(
        "SQS billed requests per message",
        [u["sqs_billed_requests_per_message_total"] for u in units],
    )
    out("  write units per status change (the whole write: table and indexes)")
    row("  all status changes", [u["status_changes"]["write_units_per_change"] for u in units], 1)
    labels = list(dict.fromkeys(k for u in units for k in u["status_changes"]["by_transition"]))
    for label in labels:
        row(
            f"  {label}",
            [
                u["status_changes"]["by_transition"].get(label, {}).get("write_units_per_change")
                for u in units
            ],
            1,
        )
    row(
        "status changes per message",
        [
            u["status_changes"]["count"] / r["units_pass"]["healthy_delivered"]
            if r["units_pass"]["healthy_delivered"]
            else None
            for u, r in zip(units, runs, strict=True)
        ],
    )
    tables = list(dict.fromkeys(t for u in units for t in u["largest_item_bytes"]))
    for table in tables:
        row(
            f"largest item written, {table} (bytes)",
            [u["largest_item_bytes"].get(table) for u in units],
            0,
        )
    row("failed conditional writes (count)", [u["failed_conditional_writes"] for u in units], 0)
    row(
        "AWS calls per message (plain pass)",
        [r["aws_calls"]["total_per_delivered_message"] for r in runs],
    )
    row(
        "Herald CPU s / 1k msgs (plain pass)",
        [r["cpu_seconds"]["per_1000_delivered"] for r in runs],
    )
    out("")
    out("Estimated AWS bill per million delivered messages (USD, throughput only)")
    bills = [bill_per_million_messages(u) for u in units]
    out(f"  {'body size':<44}" + "".join(f"{s:>{width}}" for s in sizes))
    for part, label in (
        ("dynamodb_writes", "DynamoDB write request units"),
        ("dynamodb_reads", "DynamoDB read request units"),
        ("sqs_requests", "SQS requests"),
        ("total", "total"),
    ):
        row(label, [b[part] for b in bills])
    out("  " + describe_prices())
    problems = [
        f"{r['scenario']}: {u['meter_errors']:.0f} meter errors, {u['write_errors']:.0f} failed writes"
        for r, u in zip(runs, units, strict=True)
        if u["meter_errors"] or u["write_errors"]
    ]
    if problems:
        out("  WARNING: " + "; ".join(problems))
    if not any(u["status_changes"]["count"] for u in units):
        out("  No write changed a `status` attribute: set --status-attribute to the store's name.")
    out("")
    return "\n".join(lines)


def render_floor(results: list[dict[str, Any]], ratio: dict[str, Any] | None) -> str:
    floors = [r for r in results if r.get("kind") == "floor"]
    if not floors:
        return ""
    lines: list[str] = []
    out = lines.append
    for floor in floors:
        threads = floor["threads"]
        out(
            f"Floor ({floor['title']}): scripts/bench_floor.py, boto3 + http.client, no Django and "
            f"no Herald code, on its own fresh stand-in and the same fast vendor; "
            f"{threads['submitters']} submitting threads, {threads['delivery']} delivery threads "
            f"and a receiver (ReceiveMessage up to 10), at most the same number of messages "
            f"outstanding; body {floor['body_bytes']} B. CPU: the floor process's getrusage over "
            f"its window (as the worker's), the submitting threads included."
        )
        calls = ", ".join(
            f"{op} {n:.2f}" for op, n in floor["aws_calls"]["per_delivered_message"].items()
        )
        out(
            f"  delivered {floor['delivered']}, {fmt(floor['deliveries_per_second'])} msg/s, "
            f"AWS calls/msg {fmt(floor['aws_calls']['total_per_delivered_message'], 2)} ({calls}), "
            f"CPU s/1k msgs {fmt(floor['cpu_seconds']['per_1000_delivered'], 2)}"
            + (f", errors {floor['errors']}" if floor["errors"] else "")
        )
        if floor["conditions_not_met"]:
            out(
                "  guarded updates whose condition did not hold, by target status (QUEUED: a "
                f"worker claimed first, as in Herald): {floor['conditions_not_met']}"
            )
    if ratio:
        verdict = (
            "PASS" if ratio["ratio"] is not None and ratio["ratio"] <= ratio["target"] else "FAIL"
        )
        if ratio.get("pairs"):
            pairs = "; ".join(
                f"{p['herald']:.2f} / {p['floor']:.2f} = {p['herald'] / p['floor']:.2f}"
                for p in ratio["pairs"]
            )
            out(f"  pairs run one after the other (Herald / floor CPU s/1k msgs): {pairs}")
            out(
                f"  Herald ({ratio['herald_scenario']}) costs {fmt(ratio['ratio'], 2)} x the floor's "
                f"CPU (the median of the pairs' ratios; target <= {ratio['target']}: {verdict}); "
                f"median CPU s/1k msgs {ratio['herald_cpu_per_1000']:.2f} vs "
                f"{ratio['floor_cpu_per_1000']:.2f}; AWS calls/msg "
                f"{ratio['herald_calls_per_message']:.2f} vs "
                f"{fmt(ratio['floor_calls_per_message'], 2)}"
            )
        else:
            out(
                f"  Herald ({ratio['herald_scenario']}) CPU s/1k msgs "
                f"{ratio['herald_cpu_per_1000']:.2f} = {fmt(ratio['ratio'], 2)} x the floor's "
                f"{ratio['floor_cpu_per_1000']:.2f} (target <= {ratio['target']}: {verdict}); AWS "
                f"calls/msg {ratio['herald_calls_per_message']:.2f} vs "
                f"{fmt(ratio['floor_calls_per_message'], 2)}"
            )
    out("")
    return "\n".join(lines)


def render_http(results: list[dict[str, Any]]) -> str:
    runs = [r for r in results if r.get("kind") == "http"]
    if not runs:
        return ""
    lines: list[str] = []
    out = lines.append
    for run in runs:
        web = run["web"]
        out(
            f"API through HTTP: gunicorn --config config/gunicorn.py ({web['workers']} gthread "
            f"workers x {web['threads']} threads, DEBUG off), a producer from `manage.py "
            f"create_producer`, keep-alive clients, bodies of {run['body_bytes']} B. CPU: gunicorn's "
            f"master and workers (/proc) over the window; AWS calls: the web processes' "
            f"herald_aws_calls_total from /metrics (GetQueueAttributes and the once-a-process "
            f"GetQueueUrl left out). The messages are not delivered (a plain consumer empties the queue)."
        )
        head = (
            f"  {'':<22} {'requests':>8} {'accepted':>8} {'msg/s':>7} {'req p50 ms':>10} "
            f"{'req p99 ms':>10} {'API CPU s/1k msgs':>17} {'AWS calls/msg':>13}"
        )
        out(head)
        for label, phase in (("single POST", run["single"]), ("batch POST", run["batch"])):
            if not phase.get("available"):
                out(
                    f"  {label:<22} batch endpoint not available "
                    f"(POST /api/v1/messages/batch answered {phase.get('status')})"
                )
                continue
            label = f"{label} ({phase['messages_per_request']}/req)"
            out(
                f"  {label:<22} {phase['requests']:>8} {phase['accepted']:>8} "
                f"{fmt(phase['accepted_per_second']):>7} {fmt(phase['latency_ms']['p50'], 0):>10} "
                f"{fmt(phase['latency_ms']['p99'], 0):>10} {phase['cpu_per_1000_accepted']:>17.2f} "
                f"{phase['aws_calls_per_accepted_message_total']:>13.2f}"
            )
            calls = ", ".join(
                f"{op} {n:.2f}" for op, n in phase["aws_calls_per_accepted_message"].items()
            )
            out(f"  {'':<22} calls/msg: {calls}; statuses {phase['statuses']}")
    out("")
    return "\n".join(lines)


def render_listing(results: list[dict[str, Any]]) -> str:
    runs = [r for r in results if r.get("kind") == "listing"]
    if not runs:
        return ""
    lines: list[str] = []
    out = lines.append
    for run in runs:
        sizes = run["sizes"]
        out(
            "Listings (issue 16): one page each, one producer's messages loaded through Herald's "
            "store (not delivered); time on the stand-in, Query/Scan requests and items DynamoDB "
            f"reported scanned for the page; stopped after {run['timeout_seconds']:g} s."
        )
        for count, size in sizes.items():
            load = size["load"]
            statuses = ", ".join(f"{k} {v:,}" for k, v in sorted(load["statuses"].items()))
            kept = (
                ""
                if load["status_kept"]
                else f" WARNING: statuses not kept {load['status_samples']}"
            )
            out(
                f"  {int(count):,} messages ({statuses}; {load['rare_host_messages']} to the "
                f"searched host) loaded in {load['seconds']:.0f} s{kept}"
            )
        cell = 30
        out(f"  {'listing':<34}" + "".join(f"{f'{int(c):,} messages':>{cell}}" for c in sizes))
        names = [t["name"] for t in next(iter(sizes.values()))["listings"]]
        for position, name in enumerate(names):
            cells = []
            for size in sizes.values():
                timing = size["listings"][position] if position < len(size["listings"]) else {}
                cells.append(listing_cell(timing, run["timeout_seconds"]))
            out(f"  {name:<34}" + "".join(f"{c:>{cell}}" for c in cells))
        out(
            "  (cell: seconds, Query/Scan requests, items DynamoDB reported scanned, rows shown; "
            "'+': read by the time the listing was stopped, and still counting.) "
            "moto's Query takes time in proportion to the whole index partition, whatever the "
            "page, so its seconds grow with the table even for a bounded listing; the items "
            "scanned are what real DynamoDB would read, and bill, for the page."
        )
    out("")
    return "\n".join(lines)


def listing_cell(timing: dict[str, Any], timeout: float) -> str:
    if not timing:
        return "-"
    if timing.get("timed_out"):
        if "scanned" in timing:  # what it had read when it was stopped
            return f"> {timeout:g} s {timing['requests']}q+ {timing['scanned']:,}sc+"
        return f"> {timeout:g} s"
    if timing.get("failed"):
        return "failed"
    rows = "-" if timing.get("rows") is None else timing["rows"]
    return f"{timing['seconds']:.2f} s {timing['requests']}q {timing['scanned']:,}sc {rows}r"
