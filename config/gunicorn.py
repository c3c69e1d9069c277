"""gunicorn's configuration: the one way Herald's API and admin are served, in production and in
`make run` alike.

    gunicorn --config config/gunicorn.py config.wsgi

Values come from Herald's settings module (the same environment and `.env` file as Django's):
WEB_CONCURRENCY processes of WEB_THREADS threads each (gthread workers), on 0.0.0.0:PORT unless
`--bind` says otherwise. The hooks refuse an insecure start, give the Prometheus client its
multiprocess directory, keep what a worker loaded at start out of garbage collections, and tidy
up after worker processes.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from config import settings as herald

wsgi_app = "config.wsgi:application"
bind = [f"0.0.0.0:{herald.PORT}"]  # noqa: S104 - a container or VM serves its load balancer
worker_class = "gthread"
workers = herald.WEB_CONCURRENCY
threads = herald.WEB_THREADS
# Connections waiting to be accepted. The development server's backlog was 5: a burst of 30
# clients saw connection resets. The kernel caps this at net.core.somaxconn (4096 on Linux >= 5.4).
backlog = 2048
# A stopping worker finishes its requests in flight for up to this long.
graceful_timeout = 30
# A single process tree per container or dyno: no control socket in the home directory, which
# several servers on one machine (tests, `make run` beside production-like runs) would share.
control_socket_disable = True
# gunicorn's own log lines in Herald's format (text or JSON, secrets masked). No access log: the
# load balancer keeps one, and health checks every few seconds would flood this one.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": herald.LOGGING["formatters"],
    "handlers": herald.LOGGING["handlers"],
    "root": herald.LOGGING["root"],
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "WARNING", "handlers": ["console"], "propagate": False},
    },
}

# Every web worker writes its metric values here; /metrics adds them up (notifications/metrics.py).
# Set before any worker imports prometheus_client. An operator may choose the directory; by default
# each server gets a fresh one of its own.
METRICS_DIRECTORY_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_own_metrics_directory = METRICS_DIRECTORY_VARIABLE not in os.environ
if _own_metrics_directory:
    os.environ[METRICS_DIRECTORY_VARIABLE] = tempfile.mkdtemp(prefix="herald-metrics-")


def insecure_start_reason(*, debug: bool, secret_key: str) -> str | None:
    """Why this configuration must not be served, or None."""
    if not debug and secret_key == herald.DEVELOPMENT_SECRET_KEY:
        return (
            "Refusing to serve: DEBUG is false and SECRET_KEY is the development default. "
            "Set SECRET_KEY to a long random value (for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`), "
            "or DEBUG=true for local development."
        )
    return None


def on_starting(server: Any) -> None:
    reason = insecure_start_reason(debug=herald.DEBUG, secret_key=herald.SECRET_KEY)
    if reason:
        sys.exit(reason)
    # Values left by a previous run of this server are not this run's.
    for stale in Path(os.environ[METRICS_DIRECTORY_VARIABLE]).glob("*.db"):
        stale.unlink()


def post_worker_init(worker: Any) -> None:
    from notifications.startup import freeze_startup_objects

    freeze_startup_objects(web=True)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _own_metrics_directory:
        shutil.rmtree(os.environ[METRICS_DIRECTORY_VARIABLE], ignore_errors=True)
