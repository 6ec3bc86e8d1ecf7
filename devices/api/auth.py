"""Authentication for the HTTP API: device tokens (a device acts on itself)
and server API keys (a key acts on its own app, within its scopes)."""

from typing import Any

from rest_framework import authentication, exceptions, permissions
from rest_framework.request import Request

from devices.integrations import apikeys
from devices.models import ApiKey, Device
from devices.registry import services as registry


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
            raise exceptions.AuthenticationFailed(
                "Unknown, revoked or expired device token."
            )
        return DevicePrincipal(device), device

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class ApiKeyPrincipal:
    """The authenticated caller when a server API key is used."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey) -> None:
        self.api_key = api_key


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer kpns_sk_…``: acts on its own app's data only."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiKeyPrincipal, ApiKey] | None:
        header = authentication.get_authorization_header(request).split()
        if not header or header[0].lower() != self.keyword.lower().encode():
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Malformed Bearer authorization.")
        api_key = apikeys.api_key_authenticate(key=header[1].decode("latin-1"))
        if api_key is None:
            raise exceptions.AuthenticationFailed("Unknown or revoked API key.")
        return ApiKeyPrincipal(api_key), api_key

    def authenticate_header(self, request: Any) -> str:
        return self.keyword


class HasScope(permissions.BasePermission):
    """The API key holds the scope the view names for this method
    (``view.scopes``, e.g. ``{"GET": "devices:read"}``)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return False
        scope = (getattr(view, "scopes", None) or {}).get(request.method or "")
        if scope is None:
            return False
        if scope not in api_key.scopes:
            self.message = f"This API key lacks the {scope!r} scope."
            return False
        return True
