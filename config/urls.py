"""Top-level routes: the producer API under /api/v1/, its OpenAPI document and Swagger UI, and the
operator console under /admin/."""

from django.contrib import admin
from django.urls import include, path, re_path

from notifications.api.errors import api_not_found
from notifications.api.schema_views import SchemaView, SwaggerUIView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("notifications.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SwaggerUIView.as_view(), name="api-docs"),
    # Anything else under /api/ answers in the JSON error envelope, never Django's HTML 404 page.
    re_path(r"^api/", api_not_found),
]
