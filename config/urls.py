"""Top-level routes: the producer API under /api/v1/ and the operator console under /admin/."""

from django.contrib import admin
from django.urls import include, path, re_path

from notifications.api.errors import api_not_found

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("notifications.api.urls")),
    # Anything else under /api/ answers in the JSON error envelope, never Django's HTML 404 page.
    re_path(r"^api/", api_not_found),
]
