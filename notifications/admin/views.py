"""The operator console: dashboard, message browser, message detail and requeue, as custom views
on the Django admin site (messages live in DynamoDB, so there is no ORM changelist to reuse).

Every view is wrapped in `AdminSite.admin_view` (staff login, CSRF, no caching) and checks its
own permission (`admin.access`): `notifications.view_message` to look,
`notifications.requeue_message` to requeue, `notifications.deliver_now` to pull a scheduled retry
forward.
Views stay thin: parse the input, call one selector or service, render.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.admin import AdminSite
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from notifications import selectors, services
from notifications.admin.access import (
    DELIVER_NOW_PERMISSION,
    REQUEUE_PERMISSION,
    VIEW_PERMISSION,
    log_changes,
    requires,
)
from notifications.admin.forms import (
    BulkRequeueForm,
    DeliverNowForm,
    MessageFilterForm,
    RequeueReasonForm,
)
from notifications.admin.hosts import HostPages
from notifications.domain import MessageNotFound, Status
from notifications.models import Message as MessagePermissions

PAGE_SIZE = 50
LIST_FILTERS = ("status", "producer", "q")


class OperatorConsole(HostPages):
    """The console's URLs and views for one admin site (the target hosts' in `HostPages`)."""

    def __init__(self, site: AdminSite) -> None:
        self.site = site

    def install(self) -> None:
        """Serve the console under the site's URLs (/admin/herald/...) and link it from the
        site's index page."""
        site_urls = self.site.get_urls
        self.site.get_urls = lambda: self.get_urls() + site_urls()  # type: ignore[method-assign]
        self.site.index_template = "admin/notifications/index.html"

    def get_urls(self) -> list[URLPattern]:
        wrap = self.site.admin_view
        return [
            path("herald/dashboard/", wrap(self.dashboard), name="herald_dashboard"),
            path("herald/messages/", wrap(self.message_list), name="herald_message_list"),
            path(
                "herald/messages/requeue/",
                wrap(self.messages_requeue),
                name="herald_messages_requeue",
            ),
            path(
                "herald/messages/<str:message_id>/",
                wrap(self.message_detail),
                name="herald_message_detail",
            ),
            path(
                "herald/messages/<str:message_id>/requeue/",
                wrap(self.message_requeue),
                name="herald_message_requeue",
            ),
            path(
                "herald/messages/<str:message_id>/deliver-now/",
                wrap(self.message_deliver_now),
                name="herald_message_deliver_now",
            ),
            *self.host_urls(),
        ]

    # -- pages ------------------------------------------------------------------------------

    @requires(VIEW_PERMISSION)
    def dashboard(self, request: HttpRequest) -> HttpResponse:
        if response := self._get_only(request):
            return response
        return self._render(
            request,
            "admin/notifications/console/dashboard.html",
            "Herald dashboard",
            {
                "summary": selectors.dashboard_summary(),
                "producers": selectors.producer_names(),
                "held_back": selectors.hosts_held_back(),
            },
        )

    @requires(VIEW_PERMISSION)
    def message_list(self, request: HttpRequest) -> HttpResponse:
        if response := self._get_only(request):
            return response
        producers = selectors.producer_names()
        form = MessageFilterForm(request.GET, producers=producers)
        filters = form.cleaned_data if form.is_valid() else {}
        try:
            page = selectors.message_browse(
                status=Status(filters["status"]) if filters.get("status") else None,
                producer_id=filters.get("producer") or None,
                search=filters.get("q", ""),
                cursor=filters.get("cursor") or None,
                limit=PAGE_SIZE,
            )
        except selectors.InvalidCursor as error:
            messages.error(request, str(error))
            return HttpResponseRedirect(self._list_url(request.GET))
        return self._render(
            request,
            "admin/notifications/console/message_list.html",
            "Messages",
            {
                "form": form,
                "page": page,
                "producers": producers,
                "statuses": list(Status),
                "selected_status": filters.get("status", ""),
                "selected_producer": filters.get("producer", ""),
                "search": filters.get("q", ""),
                "list_filters": self._list_query(request.GET),
                "can_requeue": request.user.has_perm(REQUEUE_PERMISSION),
            },
        )

    @requires(VIEW_PERMISSION)
    def message_detail(self, request: HttpRequest, message_id: str) -> HttpResponse:
        if response := self._get_only(request):
            return response
        try:
            detail = selectors.message_detail(message_id=message_id)
        except MessageNotFound:
            raise Http404("No such message.") from None
        return self._render(
            request,
            "admin/notifications/console/message_detail.html",
            f"Message {message_id}",
            {
                "detail": detail,
                "message": detail.message,
                "producer_names": selectors.producer_names(),
                "can_requeue": request.user.has_perm(REQUEUE_PERMISSION)
                and detail.message.status == Status.FAILED,
                "can_deliver_now": request.user.has_perm(DELIVER_NOW_PERMISSION)
                and selectors.is_scheduled(detail.message),
                "deliver_now_form": DeliverNowForm(),
            },
        )

    # -- actions ----------------------------------------------------------------------------

    @requires(REQUEUE_PERMISSION)
    def message_requeue(self, request: HttpRequest, message_id: str) -> HttpResponse:
        """GET: the confirmation page. POST: requeue it (if it is still FAILED)."""
        if response := self._get_or_post(request):
            return response
        detail_url = reverse("admin:herald_message_detail", args=[message_id])
        form = RequeueReasonForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            report = self._requeue(request, [message_id], form.cleaned_data["reason"])
            gone = "not found" in report.skipped
            return HttpResponseRedirect(self._list_url(QueryDict()) if gone else detail_url)
        try:
            message, _ = selectors.message_get(message_id=message_id)
        except MessageNotFound:
            raise Http404("No such message.") from None
        return self._render(
            request,
            "admin/notifications/console/requeue_confirm.html",
            "Requeue a message?",
            {"form": form, "targets": [(message_id, message)], "cancel_url": detail_url},
        )

    @requires(DELIVER_NOW_PERMISSION)
    def message_deliver_now(self, request: HttpRequest, message_id: str) -> HttpResponse:
        """POST (with a reason): pull the message's scheduled retry forward."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        detail_url = reverse("admin:herald_message_detail", args=[message_id])
        form = DeliverNowForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give a reason: it goes into the message's history.")
            return HttpResponseRedirect(detail_url)
        reason = form.cleaned_data["reason"]
        outcome, _ = services.message_deliver_now(
            message_id=message_id,
            actor=f"operator:{request.user.get_username()}",
            reason=reason,
        )
        if outcome == services.PullForward.PULLED:
            log_changes(request, MessagePermissions, [message_id], f"Delivered now: {reason}")
            messages.success(request, "Pulled forward: it goes to a worker now.")
        else:
            messages.warning(request, f"Not pulled forward: {outcome}.")
        if outcome == services.PullForward.MISSING:
            return HttpResponseRedirect(self._list_url(QueryDict()))
        return HttpResponseRedirect(detail_url)

    @requires(REQUEUE_PERMISSION)
    def messages_requeue(self, request: HttpRequest) -> HttpResponse:
        """GET ?ids=…: the confirmation page for a selection. POST: requeue the FAILED ones."""
        if response := self._get_or_post(request):
            return response
        data = request.POST if request.method == "POST" else _selection(request.GET)
        form = BulkRequeueForm(data)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return HttpResponseRedirect(self._list_url(QueryDict(data.get("filters", ""))))
        back = self._list_url(QueryDict(form.cleaned_data["filters"]))
        if request.method == "POST":
            self._requeue(request, form.cleaned_data["ids"], form.cleaned_data["reason"])
            return HttpResponseRedirect(back)
        ids = form.cleaned_data["ids"]
        return self._render(
            request,
            "admin/notifications/console/requeue_confirm.html",
            "Requeue messages?",
            {"form": form, "targets": selectors.messages_by_id(ids), "cancel_url": back},
        )

    def _requeue(
        self, request: HttpRequest, message_ids: list[str], reason: str
    ) -> services.RequeueReport:
        operator = request.user.get_username()
        reason = reason or "requeued in the operator console"
        report = services.messages_requeue_selected(
            message_ids=message_ids, actor=f"operator:{operator}", reason=reason
        )
        _log_requeues(request, report.requeued, reason)
        level = messages.SUCCESS if report.requeued and not report.skipped else messages.WARNING
        messages.add_message(request, level, report.summary() + ".")
        return report

    # -- helpers ----------------------------------------------------------------------------

    def _render(
        self,
        request: HttpRequest,
        template: str,
        title: str,
        context: dict[str, Any],
        status: int = 200,
    ) -> TemplateResponse:
        return TemplateResponse(
            request,
            template,
            {**self.site.each_context(request), "title": title, **context},
            status=status,
        )

    @staticmethod
    def _get_only(request: HttpRequest) -> HttpResponse | None:
        return None if request.method == "GET" else HttpResponseNotAllowed(["GET"])

    @staticmethod
    def _get_or_post(request: HttpRequest) -> HttpResponse | None:
        allowed = ["GET", "POST"]
        return None if request.method in allowed else HttpResponseNotAllowed(allowed)

    @staticmethod
    def _list_query(params: QueryDict) -> str:
        """The list filters of a query string (no cursor), re-encoded."""
        kept = QueryDict(mutable=True)
        for name in LIST_FILTERS:
            if params.get(name):
                kept[name] = params[name][:255]
        return kept.urlencode()

    def _list_url(self, params: QueryDict) -> str:
        query = self._list_query(params)
        return reverse("admin:herald_message_list") + (f"?{query}" if query else "")


def _selection(params: QueryDict) -> QueryDict:
    """The requeue form's data from the list's GET submission (no reason yet)."""
    data = QueryDict(mutable=True)
    data.setlist("ids", params.getlist("ids"))
    data["filters"] = params.get("filters", "")
    return data


def _log_requeues(request: HttpRequest, message_ids: list[str], reason: str) -> None:
    """One entry per requeued message in Django's admin log (object id = message id)."""
    log_changes(request, MessagePermissions, message_ids, f"Requeued (FAILED → QUEUED): {reason}")
