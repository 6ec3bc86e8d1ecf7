"""WhiteNoise that lets the rest of the middleware chain stay async.

WhiteNoise's middleware is sync-only. Under ASGI, Django then runs the
chain above it in a worker thread, hops back to the event loop for the
async-capable middleware below it, and hops to a thread again for the
view: three thread switches per API request (a third of a server's samples
at 150 requests a second, docs/benchmarks.md). This subclass answers
static files the same way and awaits the next handler otherwise, so a
request crosses to a thread once, for the view.
"""

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class AsyncWhiteNoiseMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        if self.autorefresh:
            # Looks at the disk (DEBUG only): off the event loop.
            static_file = await sync_to_async(self.find_file)(request.path_info)
        else:
            static_file = self.files.get(request.path_info)
        if static_file is not None:
            return await sync_to_async(self.serve)(static_file, request)
        return await self.get_response(request)
