"""`make run`'s launcher end to end: moto's server as a real process, bootstrap, migrate,
collectstatic, gunicorn serving the API and admin, a worker delivering, a burst of 50 clients, the
probes and metrics, and Ctrl-C stopping every process in order (the worker drains first)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.e2e.support import ROOT, metric_value, read_env, wait_for
from tests.support.waiting import wait_until
from tests.vendor import Answer, Vendor

pytestmark = pytest.mark.e2e


@dataclass
class RunningStack:
    process: subprocess.Popen
    env: dict[str, str]
    port: int
    standin_port: int
    worker_port: int
    key: str

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit(self, payload: dict) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/messages", json=payload, headers=self.auth, timeout=60
        )

    def status_of(self, message_id: str) -> str:
        response = requests.get(
            f"{self.base}/api/v1/messages/{message_id}", headers=self.auth, timeout=30
        )
        return response.json()["status"]

    def wait_for_status(self, message_id: str, wanted: str, timeout: float = 60) -> str:
        seen: list[str] = []

        def reached() -> bool:
            seen.append(self.status_of(message_id))
            return seen[-1] == wanted

        wait_until(
            reached,
            timeout=timeout,
            what=lambda: f"{message_id} to be {wanted} (last {seen[-1]})",
            interval=0.3,
        )
        return seen[-1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    tmp_path = tmp_path_factory.mktemp("devstack")
    port, standin_port, worker_port = free_port(), free_port(), free_port()
    env_file = tmp_path / "herald.env"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DJANGO_", "DEBUG", "PORT", "DATABASE_URL"))
    }
    env.update(
        HERALD_ENV_FILE=str(env_file),
        PORT=str(port),
        HERALD_STANDIN_PORT=str(standin_port),
        WORKER_METRICS_PORT=str(worker_port),
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        STATIC_ROOT=str(tmp_path / "static"),
    )
    process = subprocess.Popen(
        [sys.executable, "scripts/devstack.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/livez", process)
        key = read_env(env_file)["HERALD_DEV_API_KEY"]
        yield RunningStack(process, env, port, standin_port, worker_port, key)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            process.communicate(timeout=90)


def test_make_run_stack_accepts_a_message_and_delivers_it(stack):
    values = read_env(Path(stack.env["HERALD_ENV_FILE"]))
    assert values["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{stack.standin_port}"

    response = stack.submit(
        {"target_url": "https://vendor.example.com/hook", "body": {"event": "signup"}}
    )
    assert response.status_code == 202, response.text
    assert response.headers["Server"].startswith("gunicorn")
    message_id = response.json()["id"]
    assert response.json()["status"] in ("QUEUED", "PROCESSING")
    assert stack.status_of(message_id) in ("QUEUED", "PROCESSING")

    # The stack's worker delivers to a real local vendor (loopback is allowed in development).
    vendor = Vendor().start()
    try:
        delivered = stack.submit({"target_url": vendor.url("/hook"), "body": {"event": "paid"}})
        delivered_id = delivered.json()["id"]
        assert stack.wait_for_status(delivered_id, "COMPLETED") == "COMPLETED"
        [call] = vendor.requests_to("/hook")
        assert call.headers["Herald-Message-Id"] == delivered_id
    finally:
        vendor.stop()

    # A management command in a "second terminal" reaches the same stack through the env file.
    bootstrap = subprocess.run(
        [sys.executable, "manage.py", "bootstrap"],
        cwd=ROOT,
        env={**stack.env, "PORT": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "already present" in bootstrap.stdout, bootstrap.stderr


def test_admin_and_its_static_files_are_served(stack):
    login = requests.get(f"{stack.base}/admin/login/", timeout=30)
    assert login.status_code == 200
    assert "/static/admin/css/base.css" in login.text
    css = requests.get(f"{stack.base}/static/admin/css/base.css", timeout=30)
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")


def test_fifty_clients_submitting_at_once_all_get_an_answer(stack):
    """The development server's listen backlog of 5 reset some of 30 simultaneous connections;
    gunicorn's backlog takes the burst, and every client gets its 202."""
    vendor = Vendor().start()
    clients = 50
    start = threading.Barrier(clients)
    outcomes: list[object] = [None] * clients

    def client(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = stack.submit(
                {"target_url": vendor.url(f"/burst/{index}"), "body": {"n": index}}
            ).status_code
        except requests.RequestException as error:  # a reset, a refusal, a timeout
            outcomes[index] = error

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        vendor.stop()
    assert outcomes == [202] * clients


def test_probes_and_metrics_of_the_web_process(stack):
    live = requests.get(f"{stack.base}/livez", timeout=10)
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    assert "no-store" in live.headers["Cache-Control"]

    ready = requests.get(f"{stack.base}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) == {"dynamodb", "sqs"}

    before = requests.get(f"{stack.base}/metrics", timeout=10).text
    accepted = metric_value(before, "herald_submissions_total", outcome="accepted")
    assert stack.submit({"target_url": "https://vendor.example.com/x"}).status_code == 202
    rejected = stack.submit({"target_url": "ftp://vendor.example.com/x"})
    assert rejected.status_code == 400
    after = requests.get(f"{stack.base}/metrics", timeout=10).text
    # Every gunicorn worker's counts, added up (multiprocess mode), whichever served the scrape.
    assert metric_value(after, "herald_submissions_total", outcome="accepted") == accepted + 1
    assert (
        metric_value(after, "herald_submissions_total", outcome="rejected", code="VALIDATION_ERROR")
        >= 1
    )
    assert metric_value(after, "herald_queue_messages", queue="dead_letter", state="visible") == 0
    # /readyz's own calls above were counted.
    assert (
        metric_value(after, "herald_aws_calls_total", service="dynamodb", operation="DescribeTable")
        >= 1
    )


def test_probes_and_metrics_of_the_worker_after_real_deliveries(stack):
    worker = f"http://127.0.0.1:{stack.worker_port}"
    wait_for(f"{worker}/livez", stack.process)
    assert requests.get(f"{worker}/livez", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{worker}/readyz", timeout=10)
    assert ready.status_code == 200 and set(ready.json()["checks"]) == {"dynamodb", "sqs"}

    def scrape() -> str:
        return requests.get(f"{worker}/metrics", timeout=10).text

    def count(text: str, name: str, **labels: str) -> float:
        return metric_value(text, name, **labels)

    before = scrape()
    vendor = Vendor().start()
    try:
        url = vendor.script("/flaky", Answer(503), Answer(200))
        ok = [stack.submit({"target_url": vendor.url("/ok")}).json()["id"] for _ in range(2)]
        flaky = stack.submit({"target_url": url}).json()["id"]
        for message_id in (*ok, flaky):  # the 503 is retried after RETRY_SCHEDULE's first delay
            assert stack.wait_for_status(message_id, "COMPLETED", timeout=90) == "COMPLETED"
    finally:
        vendor.stop()
    after = scrape()
    completed = "herald_deliveries_total"
    assert (
        count(after, completed, outcome="completed")
        == count(before, completed, outcome="completed") + 3
    )
    # At least the 503's retry (messages of earlier tests, for hosts that do not resolve, retry too).
    assert count(after, completed, outcome="retry") >= count(before, completed, outcome="retry") + 1
    attempts = "herald_delivery_attempt_duration_seconds_count"
    assert (
        count(after, attempts, outcome="delivered") - count(before, attempts, outcome="delivered")
        == 3
    )
    assert count(after, attempts, outcome="retry") - count(before, attempts, outcome="retry") >= 1
    lag = "herald_delivery_lag_seconds_count"
    assert count(after, lag) - count(before, lag) == 3
    claims = "herald_aws_calls_total"
    assert (
        count(after, claims, service="dynamodb", operation="UpdateItem")
        >= count(before, claims, service="dynamodb", operation="UpdateItem") + 4
    )  # a claim and a result per attempt, at least
    # Queue messages are deleted in batches (notifications/worker/acks.py), never one by one.
    assert count(after, claims, service="sqs", operation="DeleteMessageBatch") >= 1
    assert count(after, claims, service="sqs", operation="DeleteMessage") == 0
    assert count(after, "herald_deliveries_in_flight") == 0
    assert count(after, "herald_queue_messages", queue="dead_letter", state="visible") == 0


def test_an_oversized_body_from_a_plain_http_client_is_413(stack):
    body = json.dumps(
        {"target_url": "https://vendor.example.com/x", "body": "x" * 300 * 1024}
    ).encode()
    request = urllib.request.Request(
        f"{stack.base}/api/v1/messages",
        data=body,
        headers={**stack.auth, "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback
    assert answer.value.code == 413
    assert json.loads(answer.value.read())["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_ctrl_c_lets_the_worker_finish_before_the_stand_in_stops(stack):
    """Last in this module: it stops the stack. A delivery is in flight (the vendor answers after
    3 s) when Ctrl-C arrives; the worker finishes and records it while the stand-in still runs."""
    vendor = Vendor().start()
    try:
        url = vendor.script("/slow", Answer(delay=3.0))
        message_id = stack.submit({"target_url": url}).json()["id"]
        wait_until(
            lambda: vendor.requests_to("/slow"),
            timeout=60,
            what=f"{message_id} to reach the vendor",
        )
        os.killpg(stack.process.pid, signal.SIGINT)
        output, _ = stack.process.communicate(timeout=120)
    finally:
        vendor.stop()
    assert stack.process.returncode == 0, output
    assert "curl" in output and stack.key in output
    assert "stopped (drained)" in output
    assert "Traceback" not in output and "Connection refused" not in output, output
    order = [line for line in output.splitlines() if line.startswith("stopped ")]
    assert order == ["stopped reconcile", "stopped worker", "stopped api", "stopped aws-standin"]
    for probe_port in (stack.port, stack.standin_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{probe_port}/", timeout=1)
