"""Which browser origins may open a device socket.

Daphne accepts any Origin, including "null" (django/daphne server.py), so
cross-site WebSocket hijacking is ours to stop. Native clients send no Origin
and are allowed; browsers must come from an allowed host or origin.
"""

from urllib.parse import urlsplit

from django.conf import settings
from django.http.request import validate_host

from devices.conf import kpns_setting


def origin_allowed(origin: bytes | None) -> bool:
    if origin is None:
        return True
    text = origin.decode("latin-1").strip().lower()
    allowed = kpns_setting("ALLOWED_ORIGINS")
    if "*" in allowed or text in allowed:
        return True
    if text == "null":
        return False
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        return False
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    return validate_host(host, settings.ALLOWED_HOSTS) or validate_host(
        parts.hostname, settings.ALLOWED_HOSTS
    )
