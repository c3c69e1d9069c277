"""/livez, /readyz and /metrics for the web process, answered before the rest of Django.

Load balancers and Prometheus reach a process by its address over plain HTTP, often with a Host
header that is not in ALLOWED_HOSTS, and must not be redirected to HTTPS, given a session or cached.
So this middleware, first in MIDDLEWARE, answers these three paths itself (GET or HEAD only, no
authentication, `Cache-Control: no-store`) and hands every other request on untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from notifications import aws_probes, health, metrics


def livez() -> HttpResponse:
    """The process is up and serving; no dependency is checked."""
    return JsonResponse(health.alive())


def readyz() -> HttpResponse:
    """DynamoDB and SQS answer: 200, or 503 naming the failing check."""
    report = aws_probes.readiness()
    return JsonResponse(report.as_dict(), status=report.http_status)


def metrics_page() -> HttpResponse:
    """Every web worker's metrics, plus the queue depths read now."""
    body = metrics.render_metrics(metrics.QueueDepthCollector(aws_probes.queue_depths))
    return HttpResponse(body, content_type=metrics.CONTENT_TYPE)


ENDPOINTS: dict[str, Callable[[], HttpResponse]] = {
    "/livez": livez,
    "/readyz": readyz,
    "/metrics": metrics_page,
}


class StatusEndpointsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        endpoint = ENDPOINTS.get(request.path_info)
        if endpoint is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response: HttpResponse = JsonResponse(
                {"error": {"code": "METHOD_NOT_ALLOWED", "message": "Use GET.", "details": {}}},
                status=405,
            )
            response["Allow"] = "GET, HEAD"
        else:
            response = endpoint()
        add_never_cache_headers(response)
        return response
