"""The production web process for real: the Procfile's `web` command (collectstatic, then gunicorn
with config/gunicorn.py, as the Dockerfile runs it too) with two gthread workers, DEBUG off, TLS
settings behind a load balancer and JSON logs, after migrate and bootstrap, in front of its own AWS
stand-in process.

Real HTTP clients (urllib, requests, http.client) send oversized bodies in every framing, probe
/livez and /readyz as a load balancer would (by address, over plain HTTP), stop and restart the
stand-in under /readyz, and scrape /metrics across both worker processes.
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.e2e.support import (
    PUBLIC_HOST,
    ROOT,
    metric_value,
    procfile_command,
    production_environment,
    wait_for,
    with_virtualenv_path,
)

pytestmark = pytest.mark.e2e

LIMIT = 262144  # MAX_MESSAGE_BYTES's default


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def start_standin(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "scripts/aws_standin.py", "-p", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(f"http://127.0.0.1:{port}/moto-api/", process)
    return process


@dataclass
class WebServer:
    process: subprocess.Popen
    env: dict[str, str]
    port: int
    standin: subprocess.Popen
    standin_port: int
    key: str
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def behind_the_load_balancer(self) -> dict[str, str]:
        """What the TLS load balancer adds to every request it passes on."""
        return {"Host": PUBLIC_HOST, "X-Forwarded-Proto": "https"}

    @property
    def api_headers(self) -> dict[str, str]:
        return {
            **self.behind_the_load_balancer,
            "Authorization": f"Bearer {self.key}",
            "Content-Type": "application/json",
        }

    def submit(self, payload: dict) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/messages", json=payload, headers=self.api_headers, timeout=30
        )

    def message_ids(self) -> set[str]:
        response = requests.get(
            f"{self.base}/api/v1/messages?limit=100", headers=self.api_headers, timeout=30
        )
        assert response.status_code == 200, response.text
        return {message["id"] for message in response.json()["results"]}

    def metrics(self) -> str:
        return requests.get(f"{self.base}/metrics", timeout=30).text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebServer]:
    tmp_path = tmp_path_factory.mktemp("web")
    port, standin_port = free_port(), free_port()
    env = production_environment(tmp_path)
    env.update(
        PORT=str(port),
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{standin_port}",
        WEB_CONCURRENCY="2",
        WEB_THREADS="4",
        READINESS_TIMEOUT="1",
        LOG_FORMAT="json",
    )
    standin = start_standin(standin_port)
    log = tmp_path / "gunicorn.log"
    process = running = None
    try:
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "bootstrap")
        key = manage(env, "create_producer", "web-test").strip().splitlines()[-1]
        with log.open("w") as output:
            process = subprocess.Popen(
                procfile_command("web"),
                cwd=ROOT,
                env=with_virtualenv_path(env),
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        # Bound to 0.0.0.0:PORT, as in a container; probed on loopback.
        wait_for(f"http://127.0.0.1:{port}/livez", process)
        running = WebServer(process, env, port, standin, standin_port, key, log)
        yield running
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
        # A test may have replaced the stand-in with a new process.
        for each in {standin, running.standin if running else standin}:
            each.terminate()
            each.wait(timeout=30)


def oversized_json(size: int = 300 * 1024) -> bytes:
    return json.dumps({"target_url": "https://vendor.example.com/x", "body": "x" * size}).encode()


def in_chunks(data: bytes, size: int = 16 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_payload_too_large(status: int, body: bytes) -> None:
    assert status == 413, body[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "PAYLOAD_TOO_LARGE"
    assert error["message"] and error["details"] == {}


def test_oversized_bodies_get_413_in_the_envelope_in_every_framing(server):
    before = server.message_ids()
    rejected_before = metric_value(
        server.metrics(), "herald_submissions_total", outcome="rejected", code="PAYLOAD_TOO_LARGE"
    )
    url = f"{server.base}/api/v1/messages"

    # urllib with Content-Length: 300 KiB (this was answered 500 INTERNAL_ERROR), then 2 MiB.
    for size in (300 * 1024, 2 * 1024 * 1024):
        request = urllib.request.Request(url, data=oversized_json(size), headers=server.api_headers)
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 - loopback
        assert_payload_too_large(answer.value.code, answer.value.read())

    # requests with Content-Length, one byte over the limit.
    just_over = b'{"target_url": "https://vendor.example.com/x", "body": "' + b"x" * LIMIT + b'"}'
    response = requests.post(url, data=just_over, headers=server.api_headers, timeout=30)
    assert_payload_too_large(response.status_code, response.content)

    # Chunked, no Content-Length: http.client, and requests with a generator body.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(
        "POST", "/api/v1/messages", body=in_chunks(oversized_json()), headers=server.api_headers
    )
    answer = connection.getresponse()
    assert answer.getheader("Transfer-Encoding") is None
    assert_payload_too_large(answer.status, answer.read())
    connection.close()
    response = requests.post(
        url, data=in_chunks(oversized_json(1024 * 1024)), headers=server.api_headers, timeout=30
    )
    assert_payload_too_large(response.status_code, response.content)

    assert server.message_ids() == before  # nothing was written
    rejected_after = metric_value(
        server.metrics(), "herald_submissions_total", outcome="rejected", code="PAYLOAD_TOO_LARGE"
    )
    assert rejected_after == rejected_before + 5


def test_a_chunked_body_within_the_limit_is_accepted(server):
    """Under WSGI Django reads Content-Length bytes, so a chunked body used to look empty."""
    body = json.dumps({"target_url": "https://vendor.example.com/chunked"}).encode()
    response = requests.post(
        f"{server.base}/api/v1/messages",
        data=in_chunks(body, 10),
        headers=server.api_headers,
        timeout=30,
    )
    assert response.status_code == 202, response.text
    assert response.json()["target"]["url"] == "https://vendor.example.com/chunked"


def test_probes_answer_a_load_balancer_by_address_over_plain_http(server):
    for path in ("/livez", "/readyz", "/metrics"):
        response = requests.get(f"{server.base}{path}", timeout=10, allow_redirects=False)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
        assert "no-store" in response.headers["Cache-Control"]
    ready = requests.get(f"{server.base}/readyz", timeout=10).json()
    assert ready["status"] == "ok"
    assert {name: check["status"] for name, check in ready["checks"].items()} == {
        "dynamodb": "ok",
        "sqs": "ok",
    }
    # Everything else is production-strict: plain HTTP is redirected, unknown hosts refused.
    plain = requests.get(
        f"{server.base}/api/v1/messages",
        headers={"Host": PUBLIC_HOST},
        timeout=10,
        allow_redirects=False,
    )
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"https://{PUBLIC_HOST}/api/v1/messages"
    assert requests.get(f"{server.base}/admin/login/", timeout=10).status_code == 400
    secure = requests.get(
        f"{server.base}/admin/login/", headers=server.behind_the_load_balancer, timeout=10
    )
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_static_files_are_served_by_whitenoise_under_hashed_names(server):
    login = requests.get(
        f"{server.base}/admin/login/", headers=server.behind_the_load_balancer, timeout=10
    )
    match = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
    assert match, "the admin does not link a hashed stylesheet"
    css = requests.get(
        f"{server.base}{match.group(1)}", headers=server.behind_the_load_balancer, timeout=10
    )
    assert css.status_code == 200
    assert css.headers["Content-Type"].startswith("text/css")
    assert "immutable" in css.headers["Cache-Control"]


def test_metrics_add_up_the_submissions_of_every_worker_process(server):
    accepted = metric_value(server.metrics(), "herald_submissions_total", outcome="accepted")
    replayed = metric_value(server.metrics(), "herald_submissions_total", outcome="replayed")
    key = f"once-{secrets.token_hex(4)}"
    for index in range(12):  # a new connection each: both gunicorn workers take some
        assert server.submit({"target_url": f"https://vendor.example.com/{index}"}).ok
    for _ in range(2):
        response = requests.post(
            f"{server.base}/api/v1/messages",
            json={"target_url": "https://vendor.example.com/once"},
            headers={**server.api_headers, "Idempotency-Key": key},
            timeout=30,
        )
        assert response.ok
    for _ in range(4):  # whichever worker answers the scrape, the sums are the same
        text = server.metrics()
        assert metric_value(text, "herald_submissions_total", outcome="accepted") == accepted + 13
        assert metric_value(text, "herald_submissions_total", outcome="replayed") == replayed + 1
    assert metric_value(text, "herald_queue_messages", queue="work", state="visible") >= 13
    assert metric_value(text, "herald_queue_messages", queue="dead_letter", state="visible") == 0


def test_gunicorn_and_django_log_one_json_object_per_line(server):
    lines = [line for line in server.log.read_text().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert {"timestamp", "level", "logger", "message"} <= set(records[0])
    assert any(record["logger"] == "gunicorn.error" for record in records)


def test_readyz_fails_while_the_stand_in_is_stopped_and_recovers_when_it_is_back(server):
    """Last in this module: it replaces the stand-in (which forgets everything) by a new one."""
    assert requests.get(f"{server.base}/readyz", timeout=10).status_code == 200

    server.standin.terminate()
    server.standin.wait(timeout=30)
    response = requests.get(f"{server.base}/readyz", timeout=10)
    assert response.status_code == 503
    report = response.json()
    assert report["status"] == "failing"
    assert report["checks"]["dynamodb"]["status"] == "failing"
    assert report["checks"]["sqs"]["status"] == "failing"
    assert "EndpointConnectionError" in report["checks"]["dynamodb"]["error"]
    assert "127.0.0.1" not in response.text  # names the check and the error class, not where
    assert requests.get(f"{server.base}/livez", timeout=10).status_code == 200

    server.standin = start_standin(server.standin_port)
    manage(server.env, "bootstrap")
    response = requests.get(f"{server.base}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ok"


def test_the_api_contract_and_swagger_ui_are_served_without_a_key(server):
    """Swagger UI's files come from Herald's own static files (collectstatic, WhiteNoise)."""
    lb = server.behind_the_load_balancer
    document = requests.get(f"{server.base}/api/schema/?format=json", headers=lb, timeout=10)
    assert document.status_code == 200 and document.json()["openapi"].startswith("3.1")
    page = requests.get(f"{server.base}/api/docs/", headers=lb, timeout=10)
    assert page.status_code == 200
    match = re.search(
        r'src="(/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle\.[0-9a-f]{12}\.js)"',
        page.text,
    )
    assert match, "Swagger UI does not load Herald's own hashed bundle"
    bundle = requests.get(f"{server.base}{match.group(1)}", headers=lb, timeout=10)
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["Content-Type"]
