"""The KPNS HTTP API as the SDK and the CLI use it (docs/api.md)."""

from typing import Any

import httpx

DEFAULT_TIMEOUT = 10.0


class ApiError(Exception):
    """The server answered an error; ``status`` is the HTTP status."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(self.describe())

    def describe(self) -> str:
        body = self.body if isinstance(self.body, dict) else {}
        text = (
            body.get("detail")
            or body.get("title")
            or httpx.codes.get_reason_phrase(self.status)
        )
        errors = body.get("errors")
        if isinstance(errors, dict) and errors:
            fields = "; ".join(
                f"{name}: {_words(msgs)}" for name, msgs in errors.items()
            )
            text = f"{text} ({fields})" if text != "See errors." else fields
        return f"HTTP {self.status}: {text}"


def _words(messages: Any) -> str:
    if isinstance(messages, list):
        return " ".join(map(str, messages))
    return str(messages)


async def request(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: Any = None,
    authorization: str | None = None,
) -> Any:
    headers = {"Accept": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    response = await http.request(method, url, json=json, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_error:
        raise ApiError(response.status_code, body)
    return body


async def register(
    http: httpx.AsyncClient, server: str, client_key: str, **fields: Any
) -> dict[str, Any]:
    """POST /api/v1/devices/register: the device with its token (shown once)."""
    body = {"client_key": client_key, **fields}
    return await request(http, "POST", f"{server}/api/v1/devices/register", json=body)


async def device_get(http: httpx.AsyncClient, server: str, token: str) -> Any:
    return await request(
        http, "GET", f"{server}/api/v1/device", authorization=f"Device {token}"
    )


async def device_update(
    http: httpx.AsyncClient, server: str, token: str, **fields: Any
) -> Any:
    return await request(
        http,
        "PATCH",
        f"{server}/api/v1/device",
        json=fields,
        authorization=f"Device {token}",
    )


async def device_key_set(
    http: httpx.AsyncClient, server: str, token: str, *, kid: str, public_key: str
) -> Any:
    """PUT /api/v1/device/key: this device's public key for encrypted pushes."""
    return await request(
        http,
        "PUT",
        f"{server}/api/v1/device/key",
        json={"kid": kid, "public_key": public_key},
        authorization=f"Device {token}",
    )


async def device_event(
    http: httpx.AsyncClient, server: str, token: str, *, message_id: str, name: str
) -> bool:
    """POST /api/v1/device/events: an app event about a received push;
    False when this device had reported it already (counted once)."""
    body = await request(
        http,
        "POST",
        f"{server}/api/v1/device/events",
        json={"message_id": message_id, "name": name},
        authorization=f"Device {token}",
    )
    return bool(body["recorded"])


async def send_push(
    http: httpx.AsyncClient,
    server: str,
    api_key: str,
    *,
    title: str,
    aliases: list[str] | None = None,
    device_ids: list[str] | None = None,
    tags: list[str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """POST /api/v1/pushes with an API key: answers {message_id, targets}.

    Exactly one audience: ``aliases``, ``device_ids`` or ``tags``. Options:
    body, url, image, data, ttl_seconds, priority, collapse_key (None ones
    are left out).
    """
    audiences = {"aliases": aliases, "device_ids": device_ids, "tags": tags}
    given = {name: value for name, value in audiences.items() if value}
    if len(given) != 1:
        raise ValueError("give exactly one of aliases, device_ids or tags")
    body = {**given, "title": title}
    body.update({name: value for name, value in options.items() if value is not None})
    return await request(
        http,
        "POST",
        f"{server}/api/v1/pushes",
        json=body,
        authorization=f"Bearer {api_key}",
    )


async def health(http: httpx.AsyncClient, server: str) -> tuple[int, Any]:
    """GET /readyz (database and Redis checks): (status code, body) also when
    not ready (503). Servers before /readyz answer the checks at /healthz."""
    response = await http.get(f"{server}/readyz")
    if response.status_code == 404:
        response = await http.get(f"{server}/healthz")
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, None
