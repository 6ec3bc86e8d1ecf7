"""POST /api/v1/pushes/stream: pushes as NDJSON, one result line per push.

The body is read line by line and written in chunks of
KPNS_API_STREAM_CHUNK valid pushes, each chunk one statement on
PostgreSQL (devices.delivery.pushes.push_batch_apps), or one transaction
with its lines' idempotency records; the result lines of a chunk are sent
once it is committed, so what a client has read is durable. A bad line
gets its own 400 and the others go on. docs/api.md has the contract.

Outside the OpenAPI document: OpenAPI 3.0 cannot describe a stream of
JSON lines (tests/api/test_push_stream.py tests it instead).
"""

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import (
    APIException,
    ParseError,
    UnsupportedMediaType,
    ValidationError,
)
from rest_framework.request import Request
from rest_framework.settings import api_settings

from devices.api.base import ServerAPIView
from devices.api.problems import problem_body
from devices.api.pushes import push_checker
from devices.api.pushserializers import push_plain
from devices.conf import kpns_setting
from devices.delivery import targeting
from devices.integrations import idempotency
from devices.models import ApiKey, App, IdempotencyRecord

NDJSON = "application/x-ndjson"
KEY_FIELD = "idempotency_key"


class StreamTooLarge(APIException):
    status_code = 413
    default_detail = "The stream is too large."


def line_limit() -> int:
    """Bytes of one line: what one request body may hold."""
    return int(getattr(settings, "KPNS_MAX_REQUEST_BODY_BYTES", 0)) or (
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2**31
    )


@dataclass
class Line:
    number: int
    item: dict[str, Any] | None = None
    key: str | None = None
    fingerprint: str = ""
    result: dict[str, Any] | None = None


class PushStreamView(ServerAPIView):
    scopes = {"POST": "push:send"}
    parser_classes: list[Any] = []  # the body is read here, line by line

    @extend_schema(exclude=True)
    def post(self, request: Request) -> StreamingHttpResponse:
        if request.headers.get("Idempotency-Key") is not None:
            raise ValidationError(
                {"Idempotency-Key": [f"Not for streams: give lines a {KEY_FIELD}."]}
            )
        content_type = (request.content_type or "").split(";")[0].strip()
        if content_type != NDJSON:
            raise UnsupportedMediaType(content_type or "none")
        limit = int(kpns_setting("API_STREAM_MAX_BYTES"))
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > limit:
            raise StreamTooLarge(f"Streams are limited to {limit} bytes.")
        lines = _read_lines(request._request)
        return StreamingHttpResponse(
            _results(self.app, self.api_key, lines), content_type=NDJSON
        )


def _read_lines(stream: Any) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes), None for a line over the per-line limit."""
    most = line_limit()
    number = 0
    while True:
        raw = stream.readline(most + 1)
        if not raw:
            return
        number += 1
        if len(raw) > most and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of it
                raw = stream.readline(most + 1)
            yield number, None
            continue
        yield number, raw


def _results(app: App, api_key: ApiKey, lines: Iterator[tuple[int, bytes | None]]):
    """Result lines, chunk by chunk, each after its chunk committed."""
    chunk_size = int(kpns_setting("API_STREAM_CHUNK"))
    most = int(kpns_setting("API_STREAM_MAX_LINES"))
    chunk: list[Line] = []
    valid = 0
    for number, raw in lines:
        if number > most:
            if chunk:
                yield from _flush(app, api_key, chunk)
            yield _encode(
                _error(number, 413, "Too many lines", f"At most {most} lines.")
            )
            return
        line = _parse(number, raw)
        if line is None:
            continue  # a blank line
        chunk.append(line)
        valid += line.result is None
        if valid >= chunk_size:
            yield from _flush(app, api_key, chunk)
            if any(c.result and c.result["status"] == 503 for c in chunk):
                return  # the database failed: nothing further is read
            chunk, valid = [], 0
    if chunk:
        yield from _flush(app, api_key, chunk)


def _flush(app: App, api_key: ApiKey, chunk: list[Line]) -> Iterator[bytes]:
    _write(app, api_key, chunk)
    yield b"".join(_encode(line.result or {}) for line in chunk)


def _parse(number: int, raw: bytes | None) -> Line | None:
    if raw is None:
        return Line(number, result=_invalid(number, f"Over {line_limit()} bytes."))
    if not raw.strip():
        return None
    line = Line(number)
    # The API's own JSON parser (its depth, NUL and strictness rules).
    parser = api_settings.DEFAULT_PARSER_CLASSES[0]()
    try:
        item = parser.parse(io.BytesIO(raw))
    except (ParseError, ValidationError) as exc:
        line.result = _invalid(number, "Not a valid JSON object.", errors=exc.detail)
        return line
    if not isinstance(item, dict):
        line.result = _invalid(number, "Not a JSON object.")
        return line
    try:
        key = item.pop(KEY_FIELD, None)
        if key is not None:
            if not isinstance(key, str):
                raise ValidationError({KEY_FIELD: ["A string."]})
            try:
                idempotency.key_validate(key)
            except Exception as exc:
                raise ValidationError(
                    {KEY_FIELD: [f"1-{idempotency.MAX_KEY_LENGTH} characters."]}
                ) from exc
        line.item = push_plain(item) or push_checker().run_validation(item)
    except ValidationError as exc:
        line.result = _invalid(number, "See errors.", errors=exc.detail)
        return line
    if key is not None:
        line.key = key
        line.fingerprint = idempotency.request_hash("POST", "stream-line", item)
    return line


def _write(app: App, api_key: ApiKey, chunk: list[Line]) -> None:
    """Send the chunk's valid lines; set every line's result."""
    todo = [line for line in chunk if line.result is None]
    try:
        if any(line.key for line in todo):
            for attempt in range(3):
                try:
                    _write_keyed(app, api_key, todo)
                    break
                except IntegrityError:
                    # Another request took one of these keys meanwhile: its
                    # record is committed now; look again.
                    for line in todo:
                        line.result = None
                    if attempt == 2:
                        raise
        else:
            _send(app, todo)
    except DatabaseError:
        for line in todo:
            line.result = _error(
                line.number, 503, "Database unavailable", "Not sent; send it again."
            )


def _send(app: App, lines: list[Line]) -> None:
    sent = targeting.push_send_batch(
        app=app, items=[line.item for line in lines if line.item is not None]
    )
    for line, result in zip(lines, sent, strict=True):
        if result.errors or result.message is None:
            line.result = _invalid(line.number, "See errors.", errors=result.errors)
        else:
            line.result = {
                "line": line.number,
                "status": 202,
                "message_id": str(result.message.id),
                "targets": result.targets,
            }


def _write_keyed(app: App, api_key: ApiKey, lines: list[Line]) -> None:
    """Lines with idempotency keys: a key used before replays its first
    result; the records are written in the pushes' transaction."""
    now = timezone.now()
    window = timedelta(seconds=kpns_setting("IDEMPOTENCY_TTL_SECONDS"))
    keys = sorted({line.key for line in lines if line.key})
    with transaction.atomic():
        records = IdempotencyRecord.objects.filter(api_key=api_key, key__in=keys)
        records.filter(created_at__lte=now - window).delete()
        earlier = {r.key: r for r in records.filter(created_at__gt=now - window)}
        first: dict[str, Line] = {}
        fresh: list[Line] = []
        repeats: list[Line] = []
        for line in lines:
            if line.key is None:
                fresh.append(line)
            elif line.key in earlier:
                _replay(line, earlier[line.key])
            elif line.key in first:
                repeats.append(line)  # a key twice in one chunk
            else:
                first[line.key] = line
                fresh.append(line)
        _send(app, fresh)
        for line in repeats:
            _repeat(line, first[line.key or ""])
        IdempotencyRecord.objects.bulk_create(
            [
                IdempotencyRecord(
                    api_key=api_key,
                    key=line.key,
                    request_hash=line.fingerprint,
                    response_status=(line.result or {}).get("status", 0),
                    response_body=json.dumps(line.result),
                    created_at=now,
                )
                for line in first.values()
                if line.result and line.result["status"] < 500
            ]
        )


def _replay(line: Line, record: IdempotencyRecord) -> None:
    if record.request_hash != line.fingerprint:
        line.result = _error(
            line.number,
            422,
            "Idempotency key reused",
            "This idempotency_key was already used for a different push.",
        )
        return
    stored = json.loads(record.response_body or "{}")
    line.result = {**stored, "line": line.number, "replayed": True}


def _repeat(line: Line, original: Line) -> None:
    """A key given twice in one chunk: as a replay of its first line."""
    if original.fingerprint != line.fingerprint:
        line.result = _error(
            line.number,
            422,
            "Idempotency key reused",
            "This idempotency_key was already used for a different push.",
        )
        return
    line.result = {**(original.result or {}), "line": line.number, "replayed": True}


def _invalid(number: int, detail: str, **extra: Any) -> dict[str, Any]:
    return _error(number, 400, "Invalid request", detail, **extra)


def _error(
    number: int, status: int, title: str, detail: str, **extra: Any
) -> dict[str, Any]:
    return {
        "line": number,
        "status": status,
        "error": problem_body(status, title, detail, **extra),
    }


def _encode(result: dict[str, Any]) -> bytes:
    return json.dumps(result, separators=(",", ":")).encode() + b"\n"
