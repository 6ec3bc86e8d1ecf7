"""Errors as RFC 7807 problem JSON, for every API response that fails."""

import logging
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from devices.delivery import dberrors

logger = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem_body(
    status_code: int, title: str, detail: str = "", **extra: Any
) -> dict[str, Any]:
    body = {"type": "about:blank", "title": title, "status": status_code, **extra}
    if detail:
        body["detail"] = detail
    return body


def problem_response(
    status_code: int, title: str, detail: str = "", **extra: Any
) -> Response:
    return Response(
        problem_body(status_code, title, detail, **extra),
        status=status_code,
        content_type=PROBLEM_CONTENT_TYPE,
    )


def api_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for URLs that match no route: problem JSON under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            problem_body(404, "Not Found", "No such endpoint."),
            status=404,
            content_type=PROBLEM_CONTENT_TYPE,
        )
    return page_not_found(request, exception)


def problem_exception_handler(
    exc: Exception, context: dict[str, Any]
) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        )
    if isinstance(exc, RequestDataTooBig):
        # Django's check (DATA_UPLOAD_MAX_MEMORY_SIZE) raised while reading.
        return problem_response(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            "Payload Too Large",
            "The request body is too large.",
        )
    if isinstance(exc, DatabaseError):
        return _database_problem(exc)
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        errors = data if isinstance(data, dict) else {"non_field_errors": data}
        body = problem_response(
            response.status_code, "Invalid request", "See errors.", errors=errors
        )
    else:
        detail = data.get("detail", "") if isinstance(data, dict) else str(data)
        body = problem_response(
            response.status_code, _title(response.status_code), str(detail)
        )
    for header in ("Retry-After", "WWW-Authenticate", "Allow"):
        if header in response:
            body[header] = response[header]
    return body


def _database_problem(exc: DatabaseError) -> Response:
    """Only an unreachable database is an outage (devices/dberrors.py)."""
    kind = dberrors.classify(exc)
    if kind == dberrors.OTHER:
        # A bug or a constraint we did not expect: never "come back later".
        logger.error("database error", exc_info=exc)
        return problem_response(
            status.HTTP_500_INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The server failed to handle this request.",
        )
    if kind == dberrors.CONFLICT:
        # Retried where it can happen; a retry of the request is safe.
        logger.warning("database conflict answered with 503: %s", exc)
        detail = "The request conflicted with a concurrent one; retry."
    else:
        # The client sees a retry-later; the operator needs the cause.
        logger.warning("database unavailable, answered with 503: %s", exc)
        detail = "The database is unavailable; retry later."
    response = problem_response(
        status.HTTP_503_SERVICE_UNAVAILABLE, "Service unavailable", detail
    )
    response["Retry-After"] = "1" if kind == dberrors.CONFLICT else "5"
    return response


def _title(code: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"
