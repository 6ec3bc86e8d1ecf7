"""API admission control (kpns_site/admission.py): at most API_CONCURRENCY
API requests run at once, the rest wait on the event loop, and one that
waits longer than API_QUEUE_SECONDS gets 503 problem JSON with Retry-After."""

import asyncio
import json

from django.http import HttpResponse
from django.test import RequestFactory

from kpns_site.admission import ApiAdmissionMiddleware


async def test_requests_beyond_the_limit_wait_then_are_told_to_retry(settings):
    settings.KPNS = {**settings.KPNS, "API_CONCURRENCY": 1, "API_QUEUE_SECONDS": 0.3}
    release = asyncio.Event()
    running = []

    async def view(request):
        running.append(request.path)
        if request.path == "/api/v1/pushes":
            await release.wait()
        return HttpResponse("ok")

    middleware = ApiAdmissionMiddleware(view)
    factory = RequestFactory()
    first = asyncio.ensure_future(middleware(factory.post("/api/v1/pushes")))
    await asyncio.sleep(0.05)
    assert running == ["/api/v1/pushes"]

    # The slot is taken: this one waits, then is turned away.
    refused = await middleware(factory.get("/api/v1/device"))
    assert refused.status_code == 503
    assert refused["Retry-After"] == "1"
    assert refused["Content-Type"] == "application/problem+json"
    assert json.loads(refused.content)["status"] == 503
    assert running == ["/api/v1/pushes"]  # never ran

    # Pages and health checks are not API requests: never held back.
    page = await middleware(factory.get("/admin/login/"))
    assert page.status_code == 200

    # One that waits less than the bound runs once the slot frees.
    waiting = asyncio.ensure_future(middleware(factory.get("/api/v1/device")))
    await asyncio.sleep(0.1)
    assert running[-1] == "/admin/login/"
    release.set()
    assert (await first).status_code == 200
    assert (await waiting).status_code == 200
    assert running[-1] == "/api/v1/device"
