"""The deploy files agree with the code: the Procfile's and the Dockerfile's processes, the metrics
that alerts and the dashboard use, and the README's tables. (promtool and hadolint check the files'
own syntax in `make lint-deploy`.)"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from notifications import metrics
from notifications.status_server import start_status_server
from tests.conftest import free_port
from tests.e2e.support import ROOT

README = (ROOT / "README.md").read_text()
ALERTS = (ROOT / "deploy/prometheus/alerts.yaml").read_text()
DASHBOARD = json.loads((ROOT / "deploy/grafana/herald.json").read_text())
DOCKERFILE = (ROOT / "deploy/Dockerfile").read_text()
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count")


def metric_families() -> set[str]:
    """Every metric Herald defines, by family name as the README names it (counters with _total)."""
    text = metrics.render_metrics(metrics.QueueDepthCollector(dict)).decode()
    families = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in text_string_to_metric_families(text)
        if family.name.startswith("herald_")
    }
    return families | {metrics.QUEUE_MESSAGES}


def family_of(sample_name: str, families: set[str]) -> str | None:
    if sample_name in families:
        return sample_name
    for suffix in SAMPLE_SUFFIXES:
        if sample_name.endswith(suffix) and sample_name.removesuffix(suffix) in families:
            return sample_name.removesuffix(suffix)
    return None


def dashboard_expressions() -> list[str]:
    return [target["expr"] for panel in DASHBOARD["panels"] for target in panel.get("targets", [])]


def test_the_procfile_runs_the_three_processes():
    processes = dict(
        line.split(":", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert set(processes) == {"web", "worker", "reconcile"}
    assert "collectstatic --noinput" in processes["web"]
    assert "gunicorn --config config/gunicorn.py" in processes["web"]
    assert "manage.py run_worker" in processes["worker"]
    assert "manage.py reconcile --loop" in processes["reconcile"]


def test_the_dockerfile_serves_like_the_procfile_as_a_system_user():
    assert 'CMD ["gunicorn", "--config", "config/gunicorn.py"]' in DOCKERFILE
    assert "collectstatic --noinput" in DOCKERFILE
    assert 'CMD ["python", "deploy/livez.py"]' in DOCKERFILE
    assert re.search(r"^USER 10001$", DOCKERFILE, re.MULTILINE)
    assert "useradd --system --uid 10001" in DOCKERFILE
    assert DOCKERFILE.count("FROM ") == 2  # a builder stage makes the wheels


def test_alerts_and_dashboard_use_only_metrics_herald_defines():
    families = metric_families()
    used = set(re.findall(r"herald_[a-z_]+", ALERTS + " ".join(dashboard_expressions())))
    unknown = {name for name in used if family_of(name, families) is None}
    assert not unknown
    on_dashboard = {
        family_of(name, families)
        for name in re.findall(r"herald_[a-z_]+", " ".join(dashboard_expressions()))
    }
    assert on_dashboard == families


def test_the_readme_lists_every_metric_with_an_alert():
    rows = [line for line in README.splitlines() if line.startswith("| `herald_")]
    listed = {re.match(r"\| `([a-z_]+)", row).group(1) for row in rows}
    assert listed == metric_families()
    assert all(row.count("|") >= 4 for row in rows)


def test_the_readme_configuration_table_lists_every_setting():
    settings_source = (ROOT / "config/settings.py").read_text()
    read = set(
        re.findall(r'env\.(?:str|int|float|bool|list|db|path)\(\s*"([A-Z_]+)"', settings_source)
    )
    table = "\n".join(line for line in README.splitlines() if line.startswith("| `"))
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert read - documented == set()


@pytest.mark.parametrize(("live", "code"), [(True, 0), (False, 1)])
def test_the_image_healthcheck_asks_livez(live, code):
    server = start_status_server(
        host="127.0.0.1", port=0, liveness=lambda: live, readiness=lambda: None
    )
    try:
        result = subprocess.run(
            [sys.executable, "deploy/livez.py"],
            cwd=ROOT,
            env={"HEALTHCHECK_PORT": str(server.port), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
        )
    finally:
        server.stop()
    assert result.returncode == code


def test_the_image_healthcheck_fails_when_nothing_listens():
    result = subprocess.run(
        [sys.executable, "deploy/livez.py"],
        cwd=ROOT,
        env={"PORT": str(free_port()), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "/livez" in result.stderr
