"""Django's page middleware without thread hops, and none of it for the API.

Under ASGI, Django runs every hook of an old-style middleware
(process_request, process_view, process_response) in a worker thread: the
admin's eight middleware cost 13 thread hops per request, most of an API
request's event-loop time (docs/benchmarks.md, "Targeted REST"). Here:

* hooks that do no I/O (security headers, slash redirects, CSRF checks,
  the lazy user, frame options) run inline on the event loop;
* session and messages, which read and write the session store, keep their
  thread, and the API (token and API-key authentication, JSON only) and the
  health checks skip them altogether.

Each class subclasses the one it replaces, so Django's own checks (admin
needs sessions, auth and messages) still recognise it.
"""

from typing import Any

from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest, HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

# Paths that never use a session, a message or a CSRF cookie.
NO_SESSION_PATHS = ("/api/v1/", "/healthz", "/readyz")


class _Inline:
    """Run process_request/process_response on the event loop (no I/O)."""

    async_mode: bool
    get_response: Any

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self._inline(request)
        return super().__call__(request)  # type: ignore[misc]

    async def _inline(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)
        if hasattr(self, "process_response"):
            response = self.process_response(request, response)
        return response


class _PagesOnly:
    """Skip this middleware for API and health-check requests."""

    get_response: Any

    def __call__(self, request: HttpRequest) -> Any:
        if request.path_info.startswith(NO_SESSION_PATHS):
            return self.get_response(request)
        return super().__call__(request)  # type: ignore[misc]


class SecurityMiddleware(_Inline, security.SecurityMiddleware):
    pass


class CommonMiddleware(_Inline, common.CommonMiddleware):
    pass


class CsrfViewMiddleware(_Inline, csrf.CsrfViewMiddleware):
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, args: Any, kwargs: Any
    ) -> HttpResponseBase | None:
        # Reads cookies, headers and the already received body: no I/O.
        return super().process_view(request, callback, args, kwargs)


class AuthenticationMiddleware(_PagesOnly, _Inline, auth.AuthenticationMiddleware):
    pass  # lazy user objects: the session is read when one is used


class XFrameOptionsMiddleware(_Inline, clickjacking.XFrameOptionsMiddleware):
    pass


class SessionMiddleware(_PagesOnly, sessions.SessionMiddleware):
    pass


class MessageMiddleware(_PagesOnly, messages.MessageMiddleware):
    pass
