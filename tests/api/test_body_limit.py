"""The API's body limit in front of Django (api.body_limit), and Django's own limit mapped to the
same 413. Real servers and clients: tests/e2e/test_web_server.py."""

from __future__ import annotations

import io
import json

from notifications.api.body_limit import RequestBodyLimit
from tests.api.conftest import assert_envelope
from tests.factories import message_payload

LIMIT = 1000


class RecordingApp:
    def __init__(self) -> None:
        self.environ: dict | None = None

    def __call__(self, environ, start_response):
        self.environ = environ
        start_response("202 Accepted", [("Content-Type", "application/json")])
        return [environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))]


def call(app, *, path="/api/v1/messages", body=b"", chunked=False, declared=None):
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": "" if chunked else str(len(body) if declared is None else declared),
    }
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    answer = {}

    def start_response(status, headers):
        answer.update(status=status, headers=dict(headers))

    answer["body"] = b"".join(RequestBodyLimit(app)(environ, start_response))
    return answer


def test_a_chunked_body_within_the_limit_reaches_django_with_its_length(settings):
    settings.MAX_MESSAGE_BYTES = LIMIT
    app = RecordingApp()
    answer = call(app, body=b"x" * LIMIT, chunked=True)
    assert answer["status"].startswith("202")
    assert app.environ["CONTENT_LENGTH"] == str(LIMIT)
    assert answer["body"] == b"x" * LIMIT


def test_a_chunked_body_over_the_limit_is_413_and_never_reaches_django(settings):
    settings.MAX_MESSAGE_BYTES = LIMIT
    app = RecordingApp()
    answer = call(app, body=b"x" * (LIMIT + 1), chunked=True)
    assert answer["status"].startswith("413")
    assert answer["headers"]["Connection"] == "close"
    assert json.loads(answer["body"])["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert app.environ is None


def test_a_declared_length_over_the_limit_is_413_without_parsing(settings):
    settings.MAX_MESSAGE_BYTES = LIMIT
    app = RecordingApp()
    answer = call(app, body=b"x" * 5000, declared=5000)
    assert answer["status"].startswith("413")
    assert app.environ is None
    assert call(app, body=b"x" * LIMIT)["status"].startswith("202")


def test_other_paths_are_left_to_django(settings):
    settings.MAX_MESSAGE_BYTES = LIMIT
    app = RecordingApp()
    assert call(app, path="/admin/login/", body=b"x" * 5000, declared=5000)["status"].startswith(
        "202"
    )


def test_djangos_own_limit_is_the_same_413_not_a_500(client, settings):
    """Through the test client (and ASGI) the WSGI middleware is not in front."""
    body = json.dumps(message_payload(body="x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 10)))
    response = client.post("/api/v1/messages", data=body, content_type="application/json")
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")
