"""Logs: plain for a terminal, JSON lines in production (LOG_FORMAT).

Every line carries the id of the HTTP request it belongs to (`request_id`,
taken from the proxy's X-Request-ID or made here, and returned in the
response) and the ids a log call passes in `extra` (message_id, campaign_id,
device_id, node...). Only plain values of `extra` are written, never objects
such as the request, and anything shaped like a device token or a bearer
credential is redacted from the text: no token, key or message body belongs
in a log (tests/ops/test_logs.py).

With LOG_FORMAT=json every line a process writes is one JSON object
(``configure``): Django's own lines (its DEBUG console handler is removed),
Python warnings, uncaught exceptions of the main thread, of other threads
and "exception ignored" ones, with the traceback inside the object (``exc``),
and (devices.server.twistedlog) Twisted's log in server processes.
"""

import contextvars
import json
import logging
import logging.config
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "kpns_request_id", default=None
)

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_SECRETS = [
    # Device tokens travel as the subprotocol "kpns.token.<token>".
    (re.compile(r"(kpns\.token\.)[A-Za-z0-9_\-]+"), r"\1[redacted]"),
    # Credentials in an Authorization header that found its way into a text.
    (
        re.compile(r"((?:Bearer|Token|Basic)\s+)[A-Za-z0-9._~+/=\-]+", re.I),
        r"\1[redacted]",
    ),
    # token=..., "api_key": "...", password: ...
    (
        re.compile(
            r"((?:token|api_key|password|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+",
            re.I,
        ),
        r"\1[redacted]",
    ),
]
# LogRecord's own attributes: everything else on a record came from `extra`.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
}
_NEVER = {"token", "password", "secret", "authorization", "body", "api_key", "key"}


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Puts the current request id on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class PlainFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, times in UTC."""

    converter = time.gmtime

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None)
        if rid:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key in _RECORD_ATTRS or key.startswith("_") or key.lower() in _NEVER:
                continue
            if isinstance(value, str | int | float | bool) or value is None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        return redact(json.dumps(entry, default=str))


def configure(config: dict[str, Any]) -> None:
    """LOGGING_CONFIG: Django's dictConfig, then (JSON only) warnings and
    uncaught exceptions through the same handlers instead of plain stderr."""
    from django.conf import settings

    logging.config.dictConfig(config)
    if getattr(settings, "LOG_FORMAT", "plain") != "json":
        return
    logging.captureWarnings(True)
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread
    sys.unraisablehook = _unraisable


_crash_logger = logging.getLogger("kpns.uncaught")


def _uncaught(
    kind: type[BaseException],
    value: BaseException,
    traceback: TracebackType | None,
) -> None:
    _crash_logger.critical("uncaught exception", exc_info=(kind, value, traceback))


def _uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    _crash_logger.error(
        "uncaught exception in thread %s",
        name,
        exc_info=exc_info,  # type: ignore[arg-type]
    )


def _unraisable(args: Any) -> None:
    exc_info = (args.exc_type, args.exc_value, args.exc_traceback)
    _crash_logger.warning(
        "%s: %r", args.err_msg or "Exception ignored in", args.object, exc_info=exc_info
    )


def _own_request_id(request: HttpRequest) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


access_logger = logging.getLogger("kpns.access")


def request_id_middleware(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """Request ids for logs and responses, and one access line per request.

    The path is logged without its query string, and no header is.
    """

    def begin(request: HttpRequest) -> tuple[contextvars.Token, float]:
        rid = _own_request_id(request)
        request.request_id = rid  # type: ignore[attr-defined]
        return request_id.set(rid), time.monotonic()

    def end(
        request: HttpRequest,
        response: HttpResponse,
        token: contextvars.Token,
        t0: float,
    ) -> HttpResponse:
        response["X-Request-ID"] = request.request_id  # type: ignore[attr-defined]
        access_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.monotonic() - t0) * 1000, 2),
                "client": request.META.get("REMOTE_ADDR"),
            },
        )
        request_id.reset(token)
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            token, t0 = begin(request)
            response = await get_response(request)
            return end(request, response, token, t0)

        markcoroutinefunction(middleware)
        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        token, t0 = begin(request)
        response = get_response(request)
        return end(request, response, token, t0)

    return sync_middleware


request_id_middleware.sync_capable = True  # type: ignore[attr-defined]
request_id_middleware.async_capable = True  # type: ignore[attr-defined]
