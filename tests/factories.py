"""Test data built through the real services, never by hand."""

from itertools import count
from typing import Any

from devices.integrations import apikeys
from devices.models import ApiKey, App, Device
from devices.registry import services as registry

_names = count(1)


def make_app(**fields: Any) -> App:
    return registry.app_create(name=fields.pop("name", f"App {next(_names)}"), **fields)


def make_device(app: App, **fields: Any) -> tuple[Device, str]:
    fields.setdefault("platform", "android")
    registration = registry.device_register(client_key=app.client_key, **fields)
    return registration.device, registration.token


def make_api_key(
    app: App, scopes: list[str] | None = None, name: str = "test key"
) -> tuple[ApiKey, str]:
    """An API key of the app (every scope unless told) and its plaintext."""
    created = apikeys.api_key_create(
        app=app, name=name, scopes=list(apikeys.SCOPES) if scopes is None else scopes
    )
    return created.api_key, created.key
