"""Device token authentication for the device-facing HTTP endpoints."""

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from devices import registry
from devices.models import Device


class DevicePrincipal:
    """The authenticated caller when a device token is used."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, device: Device) -> None:
        self.device = device


class DeviceTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Device <token>``: the token acts on its own device only."""

    keyword = "Device"

    def authenticate(self, request: Request) -> tuple[DevicePrincipal, Device] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Device authorization.")
        device = registry.device_authenticate(token=header[1].decode("latin-1"))
        if device is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked device token.")
        return DevicePrincipal(device), device

    def authenticate_header(self, request: Any) -> str:
        return self.keyword
