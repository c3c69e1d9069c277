"""Producers in the Django admin: create (the API key is shown once), deactivate, rotate keys."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from notifications.models import Producer


@admin.register(Producer)
class ProducerAdmin(admin.ModelAdmin):
    list_display = ("name", "is_active", "key_id", "created_at")
    list_filter = ("is_active",)
    search_fields = ("name", "key_id")
    readonly_fields = ("key_id", "created_at")
    actions = ("rotate_api_key", "deactivate")

    def save_model(self, request: HttpRequest, obj: Producer, form: Any, change: bool) -> None:
        key = None if change else obj.set_new_api_key()
        super().save_model(request, obj, form, change)
        if key:
            self._show_key_once(request, obj, key)

    @admin.action(description="Rotate the API key of selected producers", permissions=["change"])
    def rotate_api_key(self, request: HttpRequest, queryset: QuerySet[Producer]) -> None:
        for producer in queryset:
            key = producer.set_new_api_key()
            producer.save(update_fields=["key_id", "key_hash"])
            self._show_key_once(request, producer, key)

    @admin.action(description="Deactivate selected producers", permissions=["change"])
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Producer]) -> None:
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} producer(s) deactivated.", messages.SUCCESS)

    def _show_key_once(self, request: HttpRequest, producer: Producer, key: str) -> None:
        self.message_user(
            request,
            f"API key for {producer.name} (shown once, store it now): {key}",
            messages.WARNING,
        )
