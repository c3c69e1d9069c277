"""The OpenAPI document: valid without warnings, committed as docs/openapi.yaml exactly as the
code generates it, and served with its Swagger UI without an API key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.templatetags.static import static
from rest_framework.test import APIClient

from tests.api.conftest import assert_envelope

COMMITTED = Path(settings.BASE_DIR) / "docs" / "openapi.yaml"


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> str:
    """What `make openapi` writes; --validate --fail-on-warn raise on any warning or an
    invalid document, so this is also the `manage.py spectacular` check of `make test`."""
    path = tmp_path_factory.mktemp("openapi") / "openapi.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))
    return path.read_text()


def test_the_committed_document_is_what_the_code_generates(generated):
    assert COMMITTED.read_text() == generated, (
        "docs/openapi.yaml differs from what the code generates: run `make openapi` "
        "(manage.py spectacular --validate --fail-on-warn --file docs/openapi.yaml) and commit it"
    )


def test_every_operation_is_documented_with_its_key_and_error_answers(generated):
    document = yaml.safe_load(generated)
    operations = [operation for path in document["paths"].values() for operation in path.values()]
    assert {operation["operationId"] for operation in operations} == {
        "submitMessage",
        "submitMessageBatch",
        "listMessages",
        "getMessage",
        "listAttempts",
        "requeueMessage",
    }
    assert document["components"]["securitySchemes"]["producerKey"]["scheme"] == "bearer"
    for operation in operations:
        assert operation["security"] == [{"producerKey": []}]
        for status in ("400", "401", "503"):
            answer = operation["responses"][status]["content"]["application/json"]
            assert answer["schema"]["$ref"].startswith("#/components/schemas/")
        assert "Retry-After" in operation["responses"]["503"]["headers"]


@pytest.mark.parametrize(
    "query,headers,media_type",
    [
        ("", {}, "application/vnd.oai.openapi"),
        ("?format=json", {}, "application/vnd.oai.openapi+json"),
        ("", {"HTTP_ACCEPT": "application/json"}, "application/json"),
    ],
)
def test_the_document_is_served_without_a_key(query, headers, media_type):
    response = APIClient().get(f"/api/schema/{query}", **headers)
    assert response.status_code == 200
    assert response["Content-Type"].split(";")[0] == media_type
    text = response.content.decode()
    served = json.loads(text) if "json" in media_type else yaml.safe_load(text)
    assert served == yaml.safe_load(COMMITTED.read_text())


def test_swagger_ui_is_served_without_a_key_from_herald_s_own_static_files():
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/schema/" in page
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        path = f"drf_spectacular_sidecar/swagger-ui-dist/{asset}"
        assert f'"{static(path)}"' in page
        assert finders.find(path), path  # collectstatic gathers it; WhiteNoise serves it
    assert 'src="http' not in page and 'href="http' not in page  # nothing from elsewhere


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
def test_the_contract_pages_answer_errors_in_the_envelope(path):
    response = APIClient().generic("TRACE", path)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == "GET, HEAD"
    assert_envelope(APIClient().get(path, HTTP_ACCEPT="text/csv"), 406, "NOT_ACCEPTABLE")
