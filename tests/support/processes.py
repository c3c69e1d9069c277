"""Real Herald processes for tests: `run_worker` processes against the session's stand-in, and
management commands run as their own processes with the same environment (so that they share
the workers' Django database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def worker_environment(endpoint: str, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(
        HERALD_ENV_FILE=str(tmp_path / "absent.env"),
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION="us-east-1",
        WORKER_POLL_SECONDS="1",
        SQS_VISIBILITY_TIMEOUT="2",
        RETRY_SCHEDULE="1",
        DELIVERY_ALLOWED_NETWORKS="127.0.0.0/8",
        WORKER_METRICS_PORT="0",  # two workers at once: no status server, no port to share
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    env.update(overrides)  # a test's own values win
    return env


def manage(env: dict[str, str], *arguments: str) -> str:
    """Run `manage.py <arguments>` in a process of its own; its output (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "manage.py", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def start_worker(
    endpoint: str,
    tmp_path: Path,
    name: str,
    *,
    concurrency: int = 4,
    launcher: tuple[str, ...] = (),
    **overrides: str,
) -> subprocess.Popen:
    """`launcher`: Python's arguments before `manage.py`, such as `("-m", "some.module")` for a
    module that runs manage.py itself."""
    env = worker_environment(endpoint, tmp_path, **overrides)
    manage(env, "migrate", "-v", "0")
    log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, *launcher, "manage.py", "run_worker", "--concurrency", str(concurrency)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
