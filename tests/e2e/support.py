"""Helpers for tests that start real processes: waiting for a server, reading its metrics, and the
environment of a production-like web process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_HOST = "herald.example.com"


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def wait_for(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    """Until `url` answers at all (any status); fails at once if `process` exits."""

    def answers() -> bool:
        assert process.poll() is None, f"the process exited early (code {process.returncode})"
        try:
            requests.get(url, timeout=2)
        except requests.RequestException:  # not listening yet, or no worker booted yet
            return False
        return True

    wait_until(answers, timeout=timeout, what=f"{url} to answer", interval=0.3)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with `labels` (0 when absent) in a text exposition."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def clean_environment(tmp_path: Path) -> dict[str, str]:
    """This process's environment without Herald's settings, and no `.env` file read."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DJANGO_", "DEBUG", "PORT", "DATABASE_URL", "SECRET_KEY"))
    }
    env.update(
        HERALD_ENV_FILE=str(tmp_path / "absent.env"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    return env


def production_environment(tmp_path: Path) -> dict[str, str]:
    """Production settings as docs/deploy.md gives them: behind a TLS load balancer at
    https://herald.example.com."""
    return {
        **clean_environment(tmp_path),
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": PUBLIC_HOST,
        "CSRF_TRUSTED_ORIGINS": f"https://{PUBLIC_HOST}",
        "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
        "SECURE_SSL_REDIRECT": "true",
        "SECURE_HSTS_SECONDS": "31536000",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
        "SECURE_HSTS_PRELOAD": "true",
        "SESSION_COOKIE_SECURE": "true",
        "CSRF_COOKIE_SECURE": "true",
    }


def procfile_command(process_type: str) -> list[str]:
    """The Procfile's command for `process_type`, run as a platform would (bash -c)."""
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == process_type:
            return ["bash", "-c", command.strip()]
    raise AssertionError(f"no {process_type} process in the Procfile")


def with_virtualenv_path(env: dict[str, str]) -> dict[str, str]:
    """`python` and `gunicorn` on PATH are this interpreter's (the project's virtualenv)."""
    return {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
