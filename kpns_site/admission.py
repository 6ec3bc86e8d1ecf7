"""Admission control for the API: at most KPNS_API_CONCURRENCY requests of a
process in its worker threads at once; the others wait on the event loop.

Django runs each API view in a thread of its own. Unbounded, an overload
(500 pushes/s offered to a process serving 90) put a hundred threads in
contention for the GIL and the ten pooled database connections: each
request held its connection ever longer and the rest timed out waiting for
one (503 "database unavailable" while the database was fine). Waiting here
costs no thread and no connection. A request that waits longer than
KPNS_API_QUEUE_SECONDS is answered 503 problem JSON with Retry-After: the
server is busy, the backend should retry.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from devices.conf import kpns_setting
from kpns_site.problems import PROBLEM_CONTENT_TYPE, problem_body

API_PREFIX = "/api/v1/"


class ApiAdmissionMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable[..., Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        # One per event loop: a semaphore belongs to the loop it waits on.
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def __call__(self, request: HttpRequest) -> Any:
        if not self.async_mode:  # WSGI or the test client: threads are the limit
            return self.get_response(request)
        return self._admit(request)

    async def _admit(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(API_PREFIX):
            return await self.get_response(request)
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(
                kpns_setting("API_CONCURRENCY")
            )
        try:
            await asyncio.wait_for(slots.acquire(), kpns_setting("API_QUEUE_SECONDS"))
        except TimeoutError:
            return busy()
        try:
            return await self.get_response(request)
        finally:
            slots.release()


def busy() -> HttpResponse:
    body = problem_body(
        503, "Service unavailable", "The server is busy; retry shortly."
    )
    response = HttpResponse(
        json.dumps(body), status=503, content_type=PROBLEM_CONTENT_TYPE
    )
    response["Retry-After"] = "1"
    return response
