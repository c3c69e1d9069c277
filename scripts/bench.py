"""`make bench`: Herald on the embedded stack, with local vendors: throughput, latency, AWS calls,
CPU and DynamoDB/SQS units per message, fairness, the framework-free floor, the API over HTTP, and
listings as the table grows.

What runs (every process on this machine, all on loopback):
  - the AWS stand-in (scripts/aws_standin.py, moto), a fresh one per scenario, bootstrapped with
    `manage.py bootstrap`;
  - the vendors (bench_vendor, a child process): a fast one and a 200 ms one on 127.0.0.1, and one
    that never answers on 127.0.0.2;
  - one Herald worker (bench_worker, a child process): Herald's real `Worker.from_settings()`, run
    like `manage.py run_worker`, with botocore counters on the clients from `notifications.aws`;
  - this process: calls `notifications.services.message_submit` from a few threads.

Scenarios (--scenarios, BENCH_SCENARIOS):
  fast, slow, fair, fair-nocap, fast-backlog, fair-backlog   delivery (bench_delivery): msg/s,
      latency, AWS calls and CPU per delivered message, fairness against a vendor that never
      answers (paced: at most --max-outstanding messages in flight; backlog: submitted first);
  units (units-<size> for each of --body-sizes)   the fast lifecycle for one body size, a plain
      pass (CPU) and a metered pass: DynamoDB write and read units per message from item sizes,
      table and each index, per status change, SQS billed requests, and the AWS bill per million
      messages they make (bench_units, bench_pricing);
  floor   the same lifecycle by a plain script without Django or Herald (bench_floor), and
      Herald's CPU per message as a ratio to it;
  http    the API through gunicorn (bench_http): API CPU and AWS calls per accepted message, single
      and batched;
  listing listings and the reconcile sweep at --listing-sizes messages (bench_listing).

What describes Herald is calls, units and CPU per message; moto is slow and not a performance model,
so its msg/s and latencies are moto's (see the design brief).

    .venv/bin/python scripts/bench.py [--messages 300] [--scenarios fast,units,floor]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bench_delivery import DeliveryBench, Scenario, floor_ratio
from bench_report import (
    MOTO_CAVEAT,
    fairness_summary,
    render_delivery,
    render_floor,
    render_http,
    render_listing,
    render_units,
    size_label,
)
from bench_setup import (
    PYTHON,
    RESULTS_DIR,
    ROOT,
    bench_environment,
    free_port,
    setup_django,
    write_json,
)
from bench_vendor import VendorProcess, vendor_child

DEFAULT_SCENARIOS = "fast,slow,fair,fair-nocap,fast-backlog,fair-backlog,floor,units,http,listing"


def parse_size(text: str) -> int:
    """ "100", "16k" (16 KiB), "200k", "1m"."""
    text = text.strip().lower().removesuffix("b")
    factor = {"k": 1024, "m": 1024 * 1024}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * factor)


def build_scenarios(options: argparse.Namespace) -> list[Scenario]:
    body = options.body_bytes
    known = {
        "fast": Scenario("fast", "a. fast vendor", "fast", body_bytes=body),
        "slow": Scenario(
            "slow", f"b. vendor answers after {options.slow_ms} ms", "slow", body_bytes=body
        ),
        "fair": Scenario(
            "fair",
            f"c. {options.hang_share:.0%} hanging, per-host limit {options.max_per_host}",
            "fast",
            hang_share=options.hang_share,
            body_bytes=body,
        ),
        "fair-nocap": Scenario(
            "fair-nocap",
            f"d. {options.hang_share:.0%} hanging, per-host limit off",
            "fast",
            hang_share=options.hang_share,
            env={"DELIVERY_MAX_PER_HOST": str(options.concurrency)},
            body_bytes=body,
        ),
        "fast-backlog": Scenario(
            "fast-backlog",
            "e. fast vendor, backlog drained",
            "fast",
            backlog=True,
            body_bytes=body,
        ),
        "fair-backlog": Scenario(
            "fair-backlog",
            f"f. {options.hang_share:.0%} hanging, limit {options.max_per_host}, backlog",
            "fast",
            hang_share=options.hang_share,
            backlog=True,
            body_bytes=body,
        ),
        "floor": Scenario(
            "floor", f"floor, body {size_label(body)}", "fast", body_bytes=body, kind="floor"
        ),
        "http": Scenario("http", "API through HTTP", "fast", body_bytes=body, kind="http"),
        "listing": Scenario("listing", "listings", "fast", kind="listing"),
    }
    units = {}
    for size in options.body_sizes:
        key = f"units-{size_label(size).replace(' ', '').lower().removesuffix('b')}"
        units[key] = Scenario(
            key, f"units, body {size_label(size)}", "fast", body_bytes=size, units=True
        )
    known.update(units)
    chosen: list[Scenario] = []
    for name in (n.strip() for n in options.scenarios.split(",") if n.strip()):
        if name == "units":
            chosen.extend(units.values())
        elif name in known:
            chosen.append(known[name])
        else:
            raise SystemExit(f"unknown scenario {name!r}; choose from {sorted(known)} or units")
    return chosen


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
        default=os.environ.get("BENCH_SCENARIOS", DEFAULT_SCENARIOS),
        help=f"comma-separated, from: {DEFAULT_SCENARIOS}, units-<size>",
    )
    parser.add_argument(
        "--body-bytes",
        type=parse_size,
        default=100,
        help="request body of the delivery, floor and http scenarios (bytes, or 16k)",
    )
    parser.add_argument(
        "--body-sizes",
        type=lambda text: [parse_size(part) for part in text.split(",") if part.strip()],
        default=os.environ.get("BENCH_BODY_SIZES", "100,16k,200k"),
        help="one units scenario per body size (BENCH_BODY_SIZES)",
    )
    parser.add_argument(
        "--status-attribute",
        default="status",
        help="the item attribute whose change the units meter counts as a status change",
    )
    parser.add_argument("--web-concurrency", type=int, default=2, help="gunicorn workers (http)")
    parser.add_argument("--web-threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--batch-size", type=int, default=100, help="messages per batch POST")
    parser.add_argument(
        "--listing-sizes",
        type=lambda text: [int(parse_size(part)) for part in text.split(",") if part.strip()],
        default=os.environ.get("BENCH_LISTING_SIZES", "10,10000"),
        help="messages loaded for the listing scenario (BENCH_LISTING_SIZES)",
    )
    parser.add_argument(
        "--listing-timeout", type=float, default=30.0, help="seconds before a listing is stopped"
    )
    parser.add_argument(
        "--floor-pairs",
        type=int,
        default=int(env_number("BENCH_FLOOR_PAIRS", 5)),
        help="runs of the fast and floor scenarios, one after the other, for the CPU ratio (its "
        "median over the pairs: one pair varies by a quarter or more on a shared machine)",
    )
    parser.add_argument("--out", default=str(RESULTS_DIR / "bench.json"))
    # Internal: the child processes.
    parser.add_argument("--worker-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vendor-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--listing-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--meter-lock", default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.scenario_timeout is None:
        options.scenario_timeout = max(120.0, options.messages * 0.6)
    return options


def run_scenarios(
    options: argparse.Namespace, env: dict[str, str], workdir: Path
) -> tuple[list[dict[str, Any]], VendorProcess | None]:
    from bench_http import run_http
    from bench_listing import run_listing

    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    setup_django()
    bench = DeliveryBench(options, env, workdir)
    bench.prepare()
    vendor = VendorProcess(options.slow_ms, env)
    bench.vendor = vendor
    results = []
    scenarios = build_scenarios(options)
    keys = [scenario.key for scenario in scenarios]
    if "fast" in keys and "floor" in keys and options.floor_pairs > 1:
        # The pairs one after the other, so that both of a pair meet the same machine.
        fast, floor = scenarios[keys.index("fast")], scenarios[keys.index("floor")]
        others = [s for s in scenarios if s.key not in ("fast", "floor")]
        scenarios = [fast, floor]
        for run in range(2, options.floor_pairs + 1):
            scenarios += [
                replace(fast, title=f"{fast.title} (run {run})"),
                replace(floor, title=f"{floor.title} (run {run})"),
            ]
        scenarios += others
    for scenario in scenarios:
        print(f"running {scenario.title} ...", file=sys.stderr, flush=True)
        if scenario.kind == "floor":
            results.append(bench.run_floor(scenario))
        elif scenario.kind == "http":
            results.append(run_http(options, env, vendor.urls["fast"]))
        elif scenario.kind == "listing":
            results.append(run_listing(options, env))
        elif scenario.units:
            results.append(bench.run_units(scenario))
        else:
            results.append(bench.run(scenario))
    return results, vendor


def main(argv: list[str]) -> int:
    options = parse_options(argv)
    if options.worker_child:
        from bench_worker import worker_child

        return worker_child(
            concurrency=options.concurrency,
            meter_lock=options.meter_lock,
            status_attribute=options.status_attribute,
        )
    if options.vendor_child:
        return vendor_child(options.slow_ms)
    if options.listing_child:
        from bench_listing import listing_child

        return listing_child(options.skip)

    RESULTS_DIR.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="herald-bench-"))
    env = bench_environment(
        workdir=workdir,
        port=free_port(),
        concurrency=options.concurrency,
        delivery_timeout=options.delivery_timeout,
        max_per_host=options.max_per_host,
    )
    for name in set(os.environ) - set(env):
        del os.environ[name]
    os.environ.update(env)  # this process's Django settings read the same environment
    vendor: VendorProcess | None = None
    try:
        results, vendor = run_scenarios(options, env, workdir)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if vendor is not None:
            vendor.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    from bench_pricing import bill_per_million_messages, price_list

    delivery = [r for r in results if r.get("kind") == "delivery"]
    honoured = {
        r["worker"]["max_per_host_honoured"] for r in delivery if r["scenario"] != "fair-nocap"
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
        "body_bytes": options.body_bytes,
        "body_sizes": options.body_sizes,
        "listing_sizes": options.listing_sizes,
        "vendors": vendor.urls if vendor else None,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
    }
    fairness = fairness_summary(delivery, options.fairness_target, options.delivery_timeout)
    ratio = floor_ratio(results)
    sections = [
        render_delivery(config, delivery, fairness) if delivery else "",
        render_units(results),
        render_floor(results, ratio),
        render_http(results),
        render_listing(results),
    ]
    report = "\n".join(section for section in sections if section)
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
            "units": "bench_units.CapacityMeter: item sizes by DynamoDB's rules, separate pass",
            "caveat": MOTO_CAVEAT,
        },
        "scenarios": results,
        "fairness": fairness,
        "floor_ratio": ratio,
        "prices": price_list(),
        "bill_per_million_messages": {
            r["scenario"]: bill_per_million_messages(r["units"]) for r in results if r.get("units")
        },
        "report": report,
    }
    write_json(out, document)
    print(f"\nJSON: {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
