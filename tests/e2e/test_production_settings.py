"""Production settings, checked the way an operator starts Herald: `check --deploy` under the
environment docs/deploy.md gives, and the web server's refusal to serve a development secret."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.e2e.support import (
    ROOT,
    clean_environment,
    procfile_command,
    production_environment,
    with_virtualenv_path,
)

pytestmark = pytest.mark.e2e


def test_check_deploy_reports_nothing_under_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stdout + result.stderr


def test_check_deploy_does_complain_about_the_local_defaults(tmp_path):
    """The check above means something: the laptop defaults fail it."""
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=clean_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    for warning in ("security.W004", "security.W008", "security.W009", "security.W012"):
        assert warning in result.stderr


def test_the_web_server_refuses_debug_off_with_the_development_secret_key(tmp_path):
    """The Procfile's web command (and the Dockerfile's, the same gunicorn start)."""
    env = {**clean_environment(tmp_path), "DEBUG": "false", "PORT": "0"}
    result = subprocess.run(
        procfile_command("web"),
        cwd=ROOT,
        env=with_virtualenv_path(env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "Refusing to serve: DEBUG is false and SECRET_KEY is the development default" in (
        result.stderr
    )
