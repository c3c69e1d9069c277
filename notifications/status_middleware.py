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

from notifications import aws_probes, metrics
from notifications.status_server import PATHS, StatusEndpoints

# The web process is live while it serves; ready while DynamoDB and SQS answer. Its /metrics adds
# every web worker's metrics (multiprocess mode) to the queue depths read now.
WEB_ENDPOINTS = StatusEndpoints(
    liveness=lambda: True,
    readiness=aws_probes.readiness,
    collectors=(metrics.QueueDepthCollector(aws_probes.queue_depths),),
)


class StatusEndpointsMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info not in PATHS:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response: HttpResponse = JsonResponse(
                {"error": {"code": "METHOD_NOT_ALLOWED", "message": "Use GET.", "details": {}}},
                status=405,
            )
            response["Allow"] = "GET, HEAD"
        else:
            status, content_type, body = WEB_ENDPOINTS.answer(request.path_info)
            response = HttpResponse(body, status=status, content_type=content_type)
        add_never_cache_headers(response)
        return response
