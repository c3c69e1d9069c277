"""The operator console's target hosts: the hosts held back (open or half-open circuits,
pauses), one host's state, limits and transitions, and the operator's actions on it — pause (with
a reason and an optional end), resume, and deliver now (close an open circuit and pull the host's
scheduled retries forward). Looking needs `notifications.view_message`; pausing and resuming
`notifications.pause_host`; deliver now `notifications.deliver_now`. Every action is a POST with
CSRF, recorded in the host's events (or each message's history) and in "Recent actions".
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse

from notifications import selectors, services
from notifications.admin.access import (
    DELIVER_NOW_PERMISSION,
    PAUSE_PERMISSION,
    VIEW_PERMISSION,
    log_changes,
    requires,
)
from notifications.admin.forms import DeliverNowForm, HostLookupForm, PauseHostForm, ResumeHostForm
from notifications.hosts import InvalidHost, normalize_host
from notifications.models import HostPolicy


class HostPages:
    """Mixed into `OperatorConsole`, which provides `site` and `_render`."""

    site: Any

    def _render(self, *args: Any, **kwargs: Any) -> HttpResponse:
        raise NotImplementedError

    def host_urls(self) -> list[URLPattern]:
        wrap = self.site.admin_view
        return [
            path("herald/hosts/", wrap(self.host_list), name="herald_host_list"),
            path("herald/hosts/<str:host>/", wrap(self.host_detail), name="herald_host_detail"),
            path("herald/hosts/<str:host>/pause/", wrap(self.host_pause), name="herald_host_pause"),
            path(
                "herald/hosts/<str:host>/resume/", wrap(self.host_resume), name="herald_host_resume"
            ),
            path(
                "herald/hosts/<str:host>/deliver-now/",
                wrap(self.host_deliver_now),
                name="herald_host_deliver_now",
            ),
        ]

    @requires(VIEW_PERMISSION)
    def host_list(self, request: HttpRequest) -> HttpResponse:
        """The hosts held back, the policies, and a look-up (?host=… opens its page)."""
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        lookup = HostLookupForm(request.GET or None)
        if lookup.is_valid():
            try:
                host = normalize_host(lookup.cleaned_data["host"])
            except InvalidHost as error:
                messages.error(request, str(error))
            else:
                return HttpResponseRedirect(reverse("admin:herald_host_detail", args=[host]))
        return self._render(
            request,
            "admin/notifications/console/hosts.html",
            "Target hosts",
            {
                "held_back": selectors.hosts_held_back(),
                "policies": HostPolicy.objects.all(),
                "defaults": selectors.default_host_limits(),
                "lookup": HostLookupForm(),
            },
        )

    @requires(VIEW_PERMISSION)
    def host_detail(self, request: HttpRequest, host: str) -> HttpResponse:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        try:
            view = selectors.host_view(host=host)
        except InvalidHost:
            raise Http404("Not a host name.") from None
        if view.state.host != host:  # spelled otherwise (case, brackets): its one page
            return HttpResponseRedirect(reverse("admin:herald_host_detail", args=[view.state.host]))
        user = request.user
        return self._render(
            request,
            "admin/notifications/console/host_detail.html",
            f"Target host {host}",
            {
                "view": view,
                "can_pause": user.has_perm(PAUSE_PERMISSION),
                "can_deliver_now": user.has_perm(DELIVER_NOW_PERMISSION),
                "can_edit_policy": user.has_perm("notifications.change_hostpolicy")
                or user.has_perm("notifications.add_hostpolicy"),
                "policy": HostPolicy.objects.filter(host=host).first(),
                "pause_form": PauseHostForm(),
                "resume_form": ResumeHostForm(),
                "deliver_now_form": DeliverNowForm(),
            },
        )

    @requires(PAUSE_PERMISSION)
    def host_pause(self, request: HttpRequest, host: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        host = self._host(host)
        form = PauseHostForm(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return self._back(host)
        reason, until = form.cleaned_data["reason"], form.cleaned_data["until"]
        try:
            state = services.host_pause(
                host=host, actor=self._actor(request), reason=reason, until=until
            )
        except ValueError as error:
            messages.error(request, str(error))
            return self._back(host)
        end = f"until {state.paused_until[:16].replace('T', ' ')} UTC" if until else "until resumed"
        log_changes(request, HostPolicy, [host], f"Paused {end}: {reason}")
        messages.success(request, f"{host} paused {end}.")
        return self._back(host)

    @requires(PAUSE_PERMISSION)
    def host_resume(self, request: HttpRequest, host: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        host = self._host(host)
        form = ResumeHostForm(request.POST)
        reason = (
            form.cleaned_data["reason"] if form.is_valid() else ""
        ) or "resumed in the console"
        resumed = services.host_resume(host=host, actor=self._actor(request), reason=reason)
        if resumed is None:
            messages.warning(request, f"{host} was not paused.")
        else:
            log_changes(request, HostPolicy, [host], f"Resumed: {reason}")
            messages.success(request, f"{host} resumed.")
        return self._back(host)

    @requires(DELIVER_NOW_PERMISSION)
    def host_deliver_now(self, request: HttpRequest, host: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        host = self._host(host)
        form = DeliverNowForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Give a reason: it goes into each message's history.")
            return self._back(host)
        reason = form.cleaned_data["reason"]
        report = services.host_deliver_now(host=host, actor=self._actor(request), reason=reason)
        log_changes(request, HostPolicy, [host], f"Delivered now ({report.summary()}): {reason}")
        messages.success(request, f"{host}: {report.summary()}.")
        return self._back(host)

    @staticmethod
    def _host(host: str) -> str:
        try:
            return normalize_host(host)
        except InvalidHost:
            raise Http404("Not a host name.") from None

    @staticmethod
    def _actor(request: HttpRequest) -> str:
        return f"operator:{request.user.get_username()}"

    @staticmethod
    def _back(host: str) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:herald_host_detail", args=[host]))
