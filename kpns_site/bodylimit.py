"""Refuse oversized HTTP request bodies with 413 before reading them.

Django's ASGI handler reads a whole request body into a spooled temporary
file before any view runs, with no upper bound (DATA_UPLOAD_MAX_MEMORY_SIZE
is only checked when a view reads request.body or POST). This middleware
answers 413 problem JSON as soon as Content-Length, or the bytes actually
streamed, exceed the limit, so a client cannot make a server process buffer
gigabytes.
"""

import json
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException


def body_limit() -> int:
    return int(getattr(settings, "KPNS_MAX_REQUEST_BODY_BYTES", 0)) or (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
    )


class BodyLimitMiddleware:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit()
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0 or declared > limit:
                await _too_large(send, limit)
                return
        seen = 0
        refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    # Tell the application the client went away: Django's
                    # handler stops reading and never runs the view.
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, limited_receive, send)
        if refused:
            await _too_large(send, limit)


async def _too_large(send: Any, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Payload Too Large",
            "status": 413,
            "detail": f"Request bodies are limited to {limit} bytes.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large."


def read_limited(stream: Any) -> bytes:
    """The whole request body, or 413 when it is over the limit.

    DRF parsers read the request stream themselves, past Django's
    DATA_UPLOAD_MAX_MEMORY_SIZE check; under Daphne the middleware above
    refuses first, and this covers WSGI servers and the test client. Used by
    the API's parser (kpns_site.jsonbody).
    """
    limit = body_limit()
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise PayloadTooLarge(f"Request bodies are limited to {limit} bytes.")
    return raw
