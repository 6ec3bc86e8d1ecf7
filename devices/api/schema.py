"""OpenAPI: problem responses, scopes and auth schemes for every operation.

``KpnsAutoSchema`` adds the error responses each operation can give (from
its authentication, scope, throttle, path and body), so no endpoint can
forget to document them; views add the ones only they give (409, 422).
"""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from devices.api.problems import PROBLEM_CONTENT_TYPE
from devices.api.serializers import StrictSerializer

RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "Seconds to wait before retrying.",
    }
}
IDEMPOTENCY_KEY = OpenApiParameter(
    name="Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=False,
    type=str,
    description=(
        "Any unique string up to 255 characters. A repeat within 24 hours with "
        "the same key and API key returns the first response and does nothing "
        "again; the same key with a different request answers 422."
    ),
)


class ProblemSerializer(serializers.Serializer):
    """RFC 7807 problem details."""

    type = serializers.CharField(default="about:blank")
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(required=False)
    errors = serializers.DictField(
        child=serializers.JSONField(),
        required=False,
        help_text="Per-field messages, for invalid requests.",
    )


PROBLEM_DESCRIPTIONS = {
    "400": "Invalid request: `errors` names each field.",
    "401": "Missing, unknown or revoked credentials.",
    "403": "The API key lacks the scope this operation needs.",
    "404": "No such object for this app.",
    "409": "The object is not in a state that allows this.",
    "413": "The request body is over the size limit.",
    "415": "The request body is not JSON (`Content-Type: application/json`).",
    "422": "The Idempotency-Key was already used for a different request.",
    "429": "Rate limit exceeded: retry after `Retry-After` seconds.",
    "503": "The database is unavailable: retry after `Retry-After` seconds.",
}


def problem(code: int, description: str = "") -> dict[str, Any]:
    """An ``extend_schema(responses=...)`` entry for a problem response."""
    description = description or PROBLEM_DESCRIPTIONS[str(code)]
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            ProblemSerializer, description=description
        )
    }


class KpnsAutoSchema(AutoSchema):
    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        operation = super().get_operation(*args, **kwargs)
        scope = required_scope(self.view, self.method)
        if operation is not None and scope:
            # After extend_schema's description, which replaces get_description.
            text = operation.get("description", "")
            operation["description"] = f"{text}\n\nScope: `{scope}`.".strip()
        return operation

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> Any:
        schema = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(
            force_instance(serializer), StrictSerializer
        ):
            schema["additionalProperties"] = False  # unknown fields are a 400
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> Any:
        responses = super()._get_response_bodies(direction)
        view, method = self.view, self.method
        codes = ["503"]
        if method in ("POST", "PUT", "PATCH"):
            codes += ["400", "413", "415"]
        elif getattr(view, "query_serializer", None) is not None:
            codes.append("400")
        if getattr(view, "authentication_classes", None):
            codes.append("401")
        if required_scope(view, method):
            codes.append("403")
        if "{" in self.path:
            codes.append("404")
        if getattr(view, "throttle_classes", None):
            codes.append("429")
        for code in sorted(codes):
            if code in responses:
                continue
            response = self._get_response_for_code(
                ProblemSerializer, code, media_types=[PROBLEM_CONTENT_TYPE]
            )
            response["description"] = PROBLEM_DESCRIPTIONS[code]
            if code in ("429", "503"):
                response["headers"] = RETRY_AFTER
            responses[code] = response
        return dict(sorted(responses.items()))


def required_scope(view: Any, method: str) -> str | None:
    scopes = getattr(view, "scopes", None) or {}
    return scopes.get(method.upper())


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "devices.api.auth.ApiKeyAuthentication"
    name = "apiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "kpns_sk_…",
            "description": "A server API key of the app, created in the admin "
            "(`Authorization: Bearer kpns_sk_…`).",
        }


class DeviceTokenScheme(OpenApiAuthenticationExtension):
    target_class = "devices.api.auth.DeviceTokenAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Device <token>`: the token returned by registration.",
        }
