"""DELIVERY_ALLOWED_NETWORKS is parsed when Django starts, not with every submission: a typo stops
the process with a message naming the entry."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_django(networks: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "HERALD_ENV_FILE": str(ROOT / "no-such-env-file"),
        "DELIVERY_ALLOWED_NETWORKS": networks,
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_typo_stops_the_process_at_start_up():
    started = start_django("10.20.0.0/16,10.20.0.0/33")
    assert started.returncode != 0
    assert "ImproperlyConfigured: DELIVERY_ALLOWED_NETWORKS: '10.20.0.0/33'" in started.stderr


def test_valid_networks_start():
    assert start_django("10.20.0.0/16, fd12::/48").returncode == 0
