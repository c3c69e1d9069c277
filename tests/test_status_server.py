"""The worker's status server: /metrics, /livez and /readyz from the callables it is given."""

from __future__ import annotations

import requests

from notifications.health import run_checks
from notifications.status_server import start_status_server


def failing() -> None:
    raise TimeoutError


def test_serves_metrics_and_the_probes_it_is_given():
    state = {"live": True, "ready": True}
    server = start_status_server(
        host="127.0.0.1",
        port=0,
        liveness=lambda: state["live"],
        readiness=lambda: run_checks(
            {"dynamodb": (lambda: None) if state["ready"] else failing, "sqs": lambda: None},
            timeout=1,
        ),
    )
    base = f"http://127.0.0.1:{server.port}"
    try:
        page = requests.get(f"{base}/metrics", timeout=5)
        assert page.status_code == 200
        assert page.headers["Content-Type"].startswith("text/plain")
        assert "herald_deliveries_total" in page.text

        live = requests.get(f"{base}/livez", timeout=5)
        assert (live.status_code, live.json()) == (200, {"status": "ok"})
        assert live.headers["Cache-Control"] == "no-store"
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ok"

        state.update(live=False, ready=False)
        assert requests.get(f"{base}/livez", timeout=5).status_code == 503
        ready = requests.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 503
        assert ready.json()["checks"]["dynamodb"] == {
            "status": "failing",
            "seconds": ready.json()["checks"]["dynamodb"]["seconds"],
            "error": "TimeoutError",
        }
        assert requests.get(f"{base}/other", timeout=5).status_code == 404
    finally:
        server.stop()
