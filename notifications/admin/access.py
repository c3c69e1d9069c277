"""Who may do what in the operator console, and how its actions reach Django's admin log.

Every console view checks its own permission (`requires`) on top of `AdminSite.admin_view`
(staff login, CSRF, no caching), and answers a page saying the message store or the queue is
unavailable, instead of a 500, when AWS does not answer."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from notifications.aws import AWSUnavailable

VIEW_PERMISSION = "notifications.view_message"
REQUEUE_PERMISSION = "notifications.requeue_message"
DELIVER_NOW_PERMISSION = "notifications.deliver_now"
PAUSE_PERMISSION = "notifications.pause_host"

View = Callable[..., HttpResponse]


def requires(permission: str) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @wraps(view)
        def checked(self: Any, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not request.user.has_perm(permission):
                raise PermissionDenied
            try:
                return view(self, request, *args, **kwargs)
            except AWSUnavailable as error:
                return self._render(
                    request,
                    "admin/notifications/console/unavailable.html",
                    "Message store unavailable",
                    {"error": str(error)},
                    status=503,
                )

        return checked

    return decorate


def log_changes(
    request: HttpRequest, model: type[Model], object_ids: Iterable[str], message: str
) -> None:
    """One "Recent actions" entry per object (by id: a message id, a host name), whether or not
    a row of `model` exists for it (messages and hosts' state live in DynamoDB)."""
    content_type = ContentType.objects.get_for_model(model)
    LogEntry.objects.bulk_create(
        LogEntry(
            user_id=request.user.pk,
            content_type=content_type,
            object_id=object_id,
            object_repr=object_id[:200],
            action_flag=CHANGE,
            change_message=message,
        )
        for object_id in object_ids
    )
