"""Where the bench runs: paths, the environment every process of a run gets, a fresh AWS stand-in
per scenario, and starting and stopping child processes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from devstack import wait_for_port  # scripts/ is on sys.path when the bench runs as a script

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ROOT / "scripts"
PYTHON = sys.executable
BENCH_SCRIPT = str(SCRIPTS / "bench.py")
RESULTS_DIR = ROOT / "bench-results"
LOGS_DIR = RESULTS_DIR / "logs"


def setup_django() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()


def write_json(path: Path, data: Any) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True))
    partial.replace(path)


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


def manage(env: dict[str, str], *args: str, output: bool = False) -> str:
    """`manage.py <args>` in a child process with the run's environment; its stdout if asked."""
    result = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE if output else subprocess.DEVNULL,
        text=True,
    )
    return result.stdout if output else ""


def bench_environment(
    *, workdir: Path, port: int, concurrency: int, delivery_timeout: float, max_per_host: int
) -> dict[str, str]:
    """The environment of every Herald process of a run: the stand-in, a throwaway SQLite
    database, never the developer's `.env` or AWS profile."""
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
            "WORKER_CONCURRENCY": str(concurrency),
            "DELIVERY_TIMEOUT": str(delivery_timeout),
            "DELIVERY_CONNECT_TIMEOUT": str(min(2.0, delivery_timeout)),
            "DELIVERY_MAX_PER_HOST": str(max_per_host),
            "DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the vendors are on loopback
            "WORKER_SHUTDOWN_GRACE": str(delivery_timeout + 5),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def standin(
    env: dict[str, str], name: str, *, bootstrap: bool = True
) -> Iterator[subprocess.Popen]:
    """A fresh AWS stand-in (moto) on the run's port for one scenario, with Herald's table and
    queues unless `bootstrap` is False; stopped afterwards. Its log goes to bench-results/logs."""
    LOGS_DIR.mkdir(parents=True, exist_ok=True)
    port = env["HERALD_STANDIN_PORT"]
    with (LOGS_DIR / f"standin-{name}.log").open("wb") as log:
        process = subprocess.Popen(
            [PYTHON, "scripts/aws_standin.py", "-p", port],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(int(port), process)
            if bootstrap:
                manage(env, "bootstrap")
            yield process
        finally:
            stop_process(process, 15)
