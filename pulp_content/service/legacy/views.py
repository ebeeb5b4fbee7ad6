"""The Django content view of 2018: serve what is stored, 302 to the streamer otherwise."""

from __future__ import annotations

import time
from html import escape
from typing import Any

from django.conf import settings
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    HttpResponseForbidden,
    HttpResponseNotFound,
    HttpResponseRedirect,
    StreamingHttpResponse,
)

from pulp_content.service import guards
from pulp_content.service.headers import content_type
from pulp_content.service.legacy.lookup import Missing, children, find
from pulp_content.service.metrics import CONTENT_TYPE, Metrics
from pulp_content.service.proxies import is_trusted_proxy
from pulp_content.service.storage import FileSystemStorage

METRICS = Metrics()  # the WSGI process's (it has one service)


def content(request: HttpRequest, path: str) -> HttpResponse | StreamingHttpResponse:
    """GET <content prefix><path> (/pulp/content/<path> by default)."""
    try:
        found = find(path)
    except Missing:
        if path.endswith("/"):
            return _listing(path)
        return HttpResponseNotFound()
    guard = found.distribution.content_guard
    if guard is not None:
        # request.path is decoded once, as the merged service's resolve() decodes it.
        peer = request.META.get("REMOTE_ADDR")
        from_proxy = is_trusted_proxy(peer, settings.PULP_CONTENT_TRUSTED_PROXIES)
        facts = guards.RequestFacts(
            request.path, dict(request.headers), request.GET.dict(), from_proxy
        )
        refusal = guards.check_now(guard.kind, guard.settings, facts)
        if refusal is not None:
            return HttpResponseForbidden(refusal.reason)
    if found.artifact is not None:
        return _serve(found.artifact.file, found.relative_path)
    redirect = settings.CONTENT["REDIRECT"]
    if not redirect["ENABLED"]:
        return HttpResponseNotFound()
    prefix = redirect["PATH_PREFIX"].strip("/")
    scheme = request.scheme
    return HttpResponseRedirect(f"{scheme}://{redirect['HOST']}:{redirect['PORT']}/{prefix}/{path}")


def _serve(name: str, relative_path: str) -> HttpResponse | StreamingHttpResponse:
    storage = FileSystemStorage(settings.PULP_CONTENT_STORAGE)
    web_server = settings.CONTENT["WEB_SERVER"]
    if web_server == "apache":
        response = HttpResponse(content_type=content_type(relative_path))
        response["X-SENDFILE"] = str(storage.path_of(name))
        return response
    if web_server == "nginx":
        response = HttpResponse(content_type=content_type(relative_path))
        response["X-Accel-Redirect"] = f"/pulp/storage/{name}"
        return response
    return FileResponse(open(storage.path_of(name), "rb"), content_type=content_type(relative_path))


def _listing(path: str) -> HttpResponse:
    try:
        names = children(path)
    except Missing:
        return HttpResponseNotFound()
    rows = "".join(f'<a href="{escape(n)}">{escape(n)}</a><br>\n' for n in names)
    return HttpResponse(f"<html><body>{rows}</body></html>\n")


def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(METRICS.render(), content_type=CONTENT_TYPE)


class CountingMiddleware:
    """Counts requests and the body bytes this process sends itself."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        started = time.monotonic()
        response = self.get_response(request)
        # Headers and body, as the aiohttp processes count (their body_length).
        sent = len(response.serialize_headers())
        delegated = response.has_header("X-SENDFILE") or response.has_header("X-Accel-Redirect")
        if not delegated:
            sent += int(response.get("Content-Length") or 0)
        stored = isinstance(response, FileResponse)
        served_from = "delegated" if delegated else "storage" if stored else "-"
        # prometheus_client's metrics take a lock of their own (gunicorn runs threads here).
        METRICS.request_done(served_from, response.status_code, time.monotonic() - started, sent)
        return response
