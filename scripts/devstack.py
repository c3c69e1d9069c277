"""`make run`: the whole development stack in one command.

Starts the embedded AWS stand-in (moto's server on 127.0.0.1), writes `.env` so that management
commands in a second terminal reach the same stack, creates the table and queues, migrates, makes
sure a development admin user and producer exist, serves the API and admin through gunicorn (as in
production), runs a delivery worker and a reconcile loop, and stops everything on Ctrl-C.
Deliberately free of Django imports: it only orchestrates processes.

Each process runs in its own process group, so Ctrl-C reaches this script alone, and the stack stops
in the reverse order of its start: the reconcile loop and the worker first (the worker finishes its
deliveries in flight, which need the AWS stand-in), then the web server, the AWS stand-in last.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
MANAGED_BY_THIS_SCRIPT = (
    "# Written by `make run` (scripts/devstack.py). Real environment variables win."
)


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def development_environment(env_file: Path) -> dict[str, str]:
    """Values for `.env`: the file's own values are kept (stable dev credentials), the process
    environment overrides, and whatever is missing gets a development default."""
    values = read_env_file(env_file)
    values.update({key: os.environ[key] for key in values if key in os.environ})
    standin_port = os.environ.get("HERALD_STANDIN_PORT") or values.get(
        "HERALD_STANDIN_PORT", "4566"
    )
    defaults = {
        "DEBUG": "true",
        "PORT": "8000",
        "WORKER_METRICS_PORT": "8001",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "DELIVERY_ALLOWED_NETWORKS": "127.0.0.0/8",
        "HERALD_DEV_ADMIN_USER": "admin",
        "HERALD_DEV_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        "HERALD_DEV_API_KEY": f"hrld_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}",
    }
    for key, value in defaults.items():
        values.setdefault(key, os.environ.get(key, value))
    for key in ("PORT", "WORKER_METRICS_PORT", "DATABASE_URL"):
        if key in os.environ:
            values[key] = os.environ[key]
    values["HERALD_STANDIN_PORT"] = standin_port
    values["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{standin_port}"
    lines = [MANAGED_BY_THIS_SCRIPT] + [f"{key}={value}" for key, value in sorted(values.items())]
    env_file.write_text("\n".join(lines) + "\n")
    env_file.chmod(0o600)
    return values


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"process exited early (code {process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing answers on 127.0.0.1:{port} after {timeout:.0f}s")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def manage(self, *args: str) -> None:
        subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=self.env, check=True)

    def start(self, name: str, *command: str) -> subprocess.Popen:
        process = subprocess.Popen(list(command), cwd=ROOT, env=self.env, process_group=0)
        self.processes.append((name, process))
        return process

    def stop(self) -> None:
        """SIGTERM each process in the reverse order of its start, waiting for each to exit; a
        second Ctrl-C kills whatever is left."""
        grace = float(self.env.get("WORKER_SHUTDOWN_GRACE") or 30)
        try:
            for name, process in reversed(self.processes):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=grace + 15)
                except subprocess.TimeoutExpired:
                    print(f"{name} did not stop in time; killing it", flush=True)
                    process.kill()
                    process.wait()
                print(f"stopped {name}", flush=True)
        except KeyboardInterrupt:
            print("interrupted again; killing what is left", flush=True)
            for _, process in self.processes:
                if process.poll() is None:
                    process.kill()

    def wait(self) -> int:
        while True:
            for name, process in self.processes:
                code = process.poll()
                if code is not None:
                    print(f"{name} exited with code {code}; stopping the stack", flush=True)
                    return 1
            time.sleep(0.5)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    env_file = Path(os.environ.get("HERALD_ENV_FILE") or ROOT / ".env")
    values = development_environment(env_file)
    env = {**os.environ, **values, "HERALD_ENV_FILE": str(env_file), "PYTHONUNBUFFERED": "1"}
    port, standin_port = int(values["PORT"]), int(values["HERALD_STANDIN_PORT"])
    worker_port = int(values["WORKER_METRICS_PORT"])
    for wanted, variable in (
        (port, "PORT"),
        (standin_port, "HERALD_STANDIN_PORT"),
        (worker_port, "WORKER_METRICS_PORT"),
    ):
        if not port_is_free(wanted):
            print(f"127.0.0.1:{wanted} is in use; set {variable} to another port.", file=sys.stderr)
            return 1

    stack = Stack(env)
    for stop_signal in (signal.SIGINT, signal.SIGTERM):  # also when started with SIGINT ignored
        signal.signal(stop_signal, _interrupt)
    try:
        print(f"starting the embedded AWS stand-in (moto) on 127.0.0.1:{standin_port}", flush=True)
        standin = stack.start(
            "aws-standin", PYTHON, "scripts/aws_standin.py", "-p", str(standin_port)
        )
        wait_for_port(standin_port, standin)
        stack.manage("bootstrap")
        stack.manage("migrate", "--noinput", "-v", "0")
        stack.manage("dev_setup")
        stack.manage("collectstatic", "--noinput", "-v", "0")
        api = stack.start(
            "api",
            PYTHON,
            "-m",
            "gunicorn",
            "--config",
            "config/gunicorn.py",
            "--bind",
            f"127.0.0.1:{port}",
        )
        wait_for_port(port, api)
        stack.start("worker", PYTHON, "manage.py", "run_worker")
        stack.start("reconcile", PYTHON, "manage.py", "reconcile", "--loop")
        print_banner(values, port)
        return stack.wait()
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    except subprocess.CalledProcessError as error:
        print(f"setup step failed: {error}", file=sys.stderr)
        return 1
    finally:
        stack.stop()


def print_banner(values: dict[str, str], port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    key = values["HERALD_DEV_API_KEY"]
    print(
        f"""
Herald is running (development; the AWS stand-in keeps its data in memory only).
  API:    {base}/api/v1/messages
  Admin:  {base}/admin/   user {values["HERALD_DEV_ADMIN_USER"]} / \
password {values["HERALD_DEV_ADMIN_PASSWORD"]}
  Health: {base}/livez  {base}/readyz    Metrics: {base}/metrics
  Worker: http://127.0.0.1:{values["WORKER_METRICS_PORT"]}/metrics  (and /livez, /readyz)
  Producer 'development' API key: {key}
  Outbound deliveries may reach: {values["DELIVERY_ALLOWED_NETWORKS"]} (development default)
  Commands in another terminal read .env: .venv/bin/python manage.py <command>

Try:
  curl -sS -X POST {base}/api/v1/messages \\
    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
    -d '{{"target_url": "https://example.com/hook", "body": {{"event": "signup"}}}}'

Ctrl-C stops everything.
""",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
