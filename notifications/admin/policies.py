"""Host policies in the Django admin: a ModelAdmin, so editing needs the model's permissions
(`notifications.change_hostpolicy`…) and every change is in "Recent actions". Workers read the
policies every HOST_STATE_REFRESH_SECONDS."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from notifications.models import HostPolicy


@admin.register(HostPolicy)
class HostPolicyAdmin(admin.ModelAdmin):
    list_display = (
        "host",
        "max_in_flight",
        "max_per_second",
        "failure_threshold",
        "cool_off_seconds",
        "note",
        "updated_at",
        "state_link",
    )
    search_fields = ("host", "note")
    readonly_fields = ("updated_at",)
    fieldsets = (
        (None, {"fields": ("host", "note")}),
        (
            "Limits across all workers (empty: the settings' default; 0: no limit)",
            {"fields": ("max_in_flight", "max_per_second")},
        ),
        ("Circuit breaker", {"fields": ("failure_threshold", "cool_off_seconds")}),
        (None, {"fields": ("updated_at",)}),
    )

    @admin.display(description="State")
    def state_link(self, obj: HostPolicy) -> str:
        return format_html(
            '<a href="{}">circuit, pause, events</a>',
            reverse("admin:herald_host_detail", args=[obj.host]),
        )
