"""Test data built through the real services, never by hand."""

from itertools import count
from typing import Any

from devices import registry
from devices.models import App, Device

_names = count(1)


def make_app(**fields: Any) -> App:
    return registry.app_create(name=fields.pop("name", f"App {next(_names)}"), **fields)


def make_device(app: App, **fields: Any) -> tuple[Device, str]:
    fields.setdefault("platform", "android")
    registration = registry.device_register(client_key=app.client_key, **fields)
    return registration.device, registration.token
