"""The base of server-API views: API-key auth, scopes and rate limit,
cursor pages, and the Idempotency-Key decorator for creates and sends.
(Body size is limited for every API view by kpns_site.bodylimit.)"""

import functools
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.http import HttpResponse
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from devices.api.auth import ApiKeyAuthentication, HasScope
from devices.api.problems import PROBLEM_CONTENT_TYPE
from devices.api.throttling import ApiKeyRateThrottle
from devices.integrations import idempotency
from devices.models import ApiKey, App


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."


class IdempotencyKeyReused(exceptions.APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was already used for a different request."


class PooledAPIView(APIView):
    """The base of every API view (device and server API)."""

    def perform_authentication(self, request: Request) -> None:
        # The method first: DRF checks it only after authentication and
        # scopes, so an undeclared method was a 401 or 403, not a 405.
        method = (request.method or "").lower()
        if method not in self.http_method_names or not hasattr(self, method):
            raise exceptions.MethodNotAllowed(request.method or "")
        super().perform_authentication(request)


class ServerAPIView(PooledAPIView):
    """A view for integrators' servers (``Authorization: Bearer kpns_sk_…``).

    Subclasses name the scope each method needs in ``scopes``.
    """

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasScope]
    throttle_classes = [ApiKeyRateThrottle]
    scopes: dict[str, str] = {}

    @property
    def api_key(self) -> ApiKey:
        api_key = self.request.auth
        assert isinstance(api_key, ApiKey)
        return api_key

    @property
    def app(self) -> App:
        return self.api_key.app


def idempotent(method: Callable[..., Response]) -> Callable[..., HttpResponse]:
    """Honour an ``Idempotency-Key`` header on this view method.

    The method runs inside the idempotency record's transaction; its errors
    become responses there, so a stored 400 replays as the same 400.
    """

    @functools.wraps(method)
    def wrapper(
        view: ServerAPIView, request: Request, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return method(view, request, *args, **kwargs)
        fingerprint = idempotency.request_hash(
            request.method or "", request.path, request.data
        )
        produced: list[Response] = []

        def call() -> tuple[int, str]:
            try:
                with transaction.atomic():
                    response = method(view, request, *args, **kwargs)
            except Exception as exc:
                response = view.handle_exception(exc)
            produced.append(response)
            # Rendered as the view's renderer will: replays are byte-equal.
            body = (
                b"" if response.data is None else JSONRenderer().render(response.data)
            )
            return response.status_code, body.decode()

        try:
            result = idempotency.idempotent_call(
                api_key=view.api_key, key=key, fingerprint=fingerprint, call=call
            )
        except idempotency.IdempotencyMismatch as exc:
            raise IdempotencyKeyReused() from exc
        except idempotency.IdempotencyBusy as exc:
            raise Conflict(
                "A request with this Idempotency-Key is in progress."
            ) from exc
        if not result.replayed:
            return produced[0]
        replay = HttpResponse(
            result.body,
            status=result.status,
            content_type=(
                PROBLEM_CONTENT_TYPE if result.status >= 400 else "application/json"
            ),
        )
        replay["Idempotent-Replayed"] = "true"
        return replay

    return wrapper


class KeysetPagination(CursorPagination):
    """Opaque ``cursor`` links over a unique order: stable under inserts."""

    page_size = 100
    page_size_query_param = "limit"
    max_page_size = 500
    ordering = "id"

    def paginate_queryset(
        self, queryset: Any, request: Request, view: APIView | None = None
    ) -> Any:
        ordering = self.ordering if isinstance(self.ordering, str) else self.ordering[0]
        self.position_field = queryset.model._meta.get_field(ordering.lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request: Request) -> Any:
        try:
            cursor = super().decode_cursor(request)
            # A forged cursor's position must fit the ordering field: "abc"
            # for an integer id was a ValueError, answered 500.
            if cursor is not None and cursor.position is not None:
                self.position_field.to_python(cursor.position)
        except (exceptions.NotFound, DjangoValidationError) as exc:
            raise exceptions.ValidationError({"cursor": ["Invalid cursor."]}) from exc
        return cursor


def paginated(
    view: APIView, queryset: Any, serializer: Callable[..., Any], ordering: str
) -> Response:
    """One page of a queryset, serialized, with next/previous links."""
    paginator = KeysetPagination()
    paginator.ordering = ordering
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)
