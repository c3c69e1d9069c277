"""The contract, served: GET /api/schema/ (the OpenAPI document, YAML, or JSON with `?format=json`
or `Accept: application/json`) and GET /api/docs/ (Swagger UI from Herald's own static files).
Both are readable without an API key (SPECTACULAR_SETTINGS' SERVE_* settings), answer only GET
and HEAD, and give their errors in the API's JSON envelope rather than as YAML or HTML."""

from __future__ import annotations

from typing import Any

from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response


class _JSONErrors:
    http_method_names = ["get", "head"]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)  # type: ignore[misc]
        self.request.accepted_renderer = JSONRenderer()  # type: ignore[attr-defined]
        self.request.accepted_media_type = JSONRenderer.media_type  # type: ignore[attr-defined]
        return response


class SchemaView(_JSONErrors, SpectacularAPIView):
    pass


class SwaggerUIView(_JSONErrors, SpectacularSwaggerView):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(url_name="schema", **kwargs)
