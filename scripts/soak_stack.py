"""The soak's stack: the embedded AWS stand-in in fault mode, the vendor, Herald's API (gunicorn),
several `run_worker` processes and a `reconcile --loop`, each a restartable process with its log
in the run's directory.

Settings are shortened so that what a fault leaves behind is picked up within the run: a call
lasts at most 10 s, a lease 20 s, a queue message stays invisible 30 s, retries come after 1, 2,
4 and 8 s, and the reconciler looks every 10 s for what waited 30 s. Everything else is Herald's
default. Nothing here reads or writes the project's `.env`.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests
from devstack import wait_for_port

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

HERALD_SETTINGS = {
    "DEBUG": "true",  # dev_setup creates the producer only in development
    "DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",  # the vendor is on loopback
    "DELIVERY_TIMEOUT": "10",
    "DELIVERY_LEASE_SECONDS": "20",
    "SQS_VISIBILITY_TIMEOUT": "30",
    "WORKER_POLL_SECONDS": "5",
    "WORKER_SHUTDOWN_GRACE": "15",
    "RETRY_SCHEDULE": "1,2,4,8",
    "RETRY_MAX_ATTEMPTS": "10",
    "RECONCILE_INTERVAL": "10",
    "RECONCILE_OLDER_THAN": "30",
    # No circuit breaking: the flaky vendor fails the first one to three calls of every message,
    # which to a breaker counting consecutive failures looks like a vendor that is down (two calls
    # in three fail). Its circuit opened again and again, and each probe, nearly always some
    # message's first call, failed; the messages behind it then waited longer than the run.
    # Circuits are tested on their own (tests/worker/test_host_protection.py, test_fleet_limits.py).
    "CIRCUIT_FAILURE_THRESHOLD": "0",
    "WEB_CONCURRENCY": "1",
    "WEB_THREADS": "8",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Service:
    """One process of the stack, restartable; its output goes to `<name>.log` in the run's
    directory (appended to across restarts)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()
        self.state = "down"  # running, stopping (SIGTERM sent), down
        self.closed = False  # the soak is stopping: no more (re)starts

    def start(self) -> subprocess.Popen | None:
        with self.lock:
            if self.closed:  # a restart a fault scheduled, come after the stack was stopped
                return None
            with self.log.open("a") as output:
                output.write(f"--- {time.strftime('%H:%M:%S')} start\n")
                output.flush()
                self.process = subprocess.Popen(
                    self.command,
                    cwd=ROOT,
                    env=self.env,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    process_group=0,  # Ctrl-C reaches the soak alone, which stops everything
                )
            self.state = "running"
            return self.process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.state == "running" and self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> int | None:
        """Send `signum`; returns the pid it went to (None when not running)."""
        with self.lock:
            if self.process is None or self.process.poll() is not None:
                return None
            self.process.send_signal(signum)
            self.state = "down" if signum == signal.SIGKILL else "stopping"
            return self.process.pid

    def stop(self, timeout: float) -> int | None:
        """SIGTERM and wait; kill when it outlives `timeout`. Returns the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.state = "down"
        return self.process.returncode


class Stack:
    """Starts and stops the soak's processes."""

    def __init__(self, run_dir: Path, *, workers: int, concurrency: int, seed: int) -> None:
        self.run_dir = run_dir
        self.standin_port = free_port()
        self.api_port = free_port()
        self.vendor_port = free_port()
        self.api_key = f"hrld_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"
        self.seed = seed
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AWS_"))},
            **HERALD_SETTINGS,
            "HERALD_ENV_FILE": str(run_dir / "absent.env"),  # never the project's .env
            "DATABASE_URL": f"sqlite:///{run_dir / 'db.sqlite3'}",
            "STATIC_ROOT": str(run_dir / "static"),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "AWS_ENDPOINT_URL": self.standin_url,
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "HERALD_DEV_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "HERALD_DEV_API_KEY": self.api_key,
            "PYTHONUNBUFFERED": "1",
        }
        self.grace = float(self.env["WORKER_SHUTDOWN_GRACE"])
        self.standin = self._service(
            "aws-standin",
            "scripts/aws_standin.py",
            "-p",
            str(self.standin_port),
            "--faults",
            "--seed",
            str(seed),
        )
        self.vendor = self._service(
            "vendor", "scripts/soak_vendor.py", "--port", str(self.vendor_port)
        )
        self.api = self._service(
            "api",
            "-m",
            "gunicorn",
            "--config",
            "config/gunicorn.py",
            "--bind",
            f"127.0.0.1:{self.api_port}",
        )
        self.workers = [
            self._service(
                f"worker-{slot}",
                "manage.py",
                "run_worker",
                "--concurrency",
                str(concurrency),
                WORKER_METRICS_PORT=str(free_port()),
            )
            for slot in range(workers)
        ]
        self.reconciler = self._service("reconcile", "manage.py", "reconcile", "--loop")

    @property
    def standin_url(self) -> str:
        return f"http://127.0.0.1:{self.standin_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def vendor_url(self) -> str:
        return f"http://127.0.0.1:{self.vendor_port}"

    def _service(self, name: str, *arguments: str, **env: str) -> Service:
        return Service(
            name, [PYTHON, *arguments], {**self.env, **env}, self.run_dir / f"{name}.log"
        )

    def manage(self, *arguments: str) -> None:
        with (self.run_dir / "setup.log").open("a") as output:
            subprocess.run(
                [PYTHON, "manage.py", *arguments],
                cwd=ROOT,
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                check=True,
            )

    def start(self) -> None:
        wait_for_port(self.standin_port, self.standin.start())
        self.manage("bootstrap")
        self.manage("migrate", "--noinput", "-v", "0")
        self.manage("dev_setup")
        self.vendor.start()
        wait_for_port(self.api_port, self.api.start(), timeout=60)
        for worker in self.workers:
            worker.start()
        self.reconciler.start()
        self._wait_for_vendor()

    def _wait_for_vendor(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"{self.vendor_url}/progress", timeout=1).raise_for_status()
                return
            except requests.RequestException:
                time.sleep(0.2)
        raise SystemExit("the soak's vendor did not start")

    def set_aws_faults(self, shares: dict[str, float]) -> None:
        requests.post(
            f"{self.standin_url}/_standin/faults", json=shares, timeout=10
        ).raise_for_status()

    def aws_fault_report(self) -> dict:
        return requests.get(f"{self.standin_url}/_standin/faults", timeout=10).json()

    def stop(self) -> None:
        """In the reverse order of the start: the reconciler and the workers (which drain
        first), the API, the vendor, the stand-in last. Restarts scheduled by faults that come
        later start nothing."""
        for service in (self.reconciler, *self.workers, self.api, self.vendor, self.standin):
            with service.lock:
                service.closed = True
        self.reconciler.stop(timeout=10)
        for worker in self.workers:
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop(timeout=self.grace + 15)
        for service in (self.api, self.vendor, self.standin):
            service.stop(timeout=30)
