"""`make run`'s launcher end to end: moto's server as a real process, bootstrap, migrate, the API
server, a submission over HTTP, and Ctrl-C stopping every process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.support.waiting import wait_until
from tests.vendor import Vendor

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def read_env(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs if not key.startswith("#")}


def answers(url: str, process: subprocess.Popen) -> bool:
    assert process.poll() is None, "the stack exited early"
    try:
        requests.get(url, timeout=1)
    except requests.ConnectionError:
        return False
    return True


def test_make_run_stack_accepts_a_message_and_stops_on_ctrl_c(tmp_path):
    port, standin_port = free_port(), free_port()
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
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
    )
    stack = subprocess.Popen(
        [sys.executable, "scripts/devstack.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v1/messages"
        wait_until(lambda: answers(api, stack), timeout=90, what=f"{api} to answer", interval=0.3)
        values = read_env(env_file)
        assert values["AWS_ENDPOINT_URL"] == f"http://127.0.0.1:{standin_port}"
        key = values["HERALD_DEV_API_KEY"]

        response = requests.post(
            f"http://127.0.0.1:{port}/api/v1/messages",
            json={"target_url": "https://vendor.example.com/hook", "body": {"event": "signup"}},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert response.status_code == 202, response.text
        message_id = response.json()["id"]
        assert response.json()["status"] in ("QUEUED", "PROCESSING")

        fetched = requests.get(
            f"http://127.0.0.1:{port}/api/v1/messages/{message_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert fetched.json()["status"] in ("QUEUED", "PROCESSING")

        # The stack's worker delivers to a real local vendor (loopback is allowed in development).
        vendor = Vendor().start()
        try:
            delivered = requests.post(
                f"http://127.0.0.1:{port}/api/v1/messages",
                json={"target_url": vendor.url("/hook"), "body": {"event": "paid"}},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            ).json()["id"]

            def completed() -> bool:
                state = requests.get(
                    f"http://127.0.0.1:{port}/api/v1/messages/{delivered}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                ).json()["status"]
                return state == "COMPLETED"

            wait_until(completed, timeout=60, what="the delivery to complete", interval=0.3)
            [call] = vendor.requests_to("/hook")
            assert call.headers["Herald-Message-Id"] == delivered
        finally:
            vendor.stop()

        admin = requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=30)
        assert admin.status_code == 200

        # A management command in a "second terminal" reaches the same stack through the env file.
        command_env = {**env, "PORT": "1"}
        bootstrap = subprocess.run(
            [sys.executable, "manage.py", "bootstrap"],
            cwd=ROOT,
            env=command_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "already present" in bootstrap.stdout, bootstrap.stderr
    finally:
        os.killpg(stack.pid, signal.SIGINT)
        output, _ = stack.communicate(timeout=60)
    assert stack.returncode == 0, output
    assert "curl" in output and key in output
    for probe_port in (port, standin_port):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{probe_port}/", timeout=1)
