"""The API's JSON parser: every request body is checked here, once, for what
no serializer can safely check later.

* Size: over KPNS_MAX_REQUEST_BODY_BYTES is 413 (kpns_site.bodylimit).
* Nesting: deeper than MAX_JSON_DEPTH is 400, counted on the raw bytes
  before json decodes them, so neither the decoder nor any code downstream
  (validation, idempotency hashing, the inbox) recurses on hostile depth. A
  1,000-deep list to the public registration endpoint was a RecursionError,
  answered 500 text/html.
* NUL: PostgreSQL cannot store U+0000 in text or jsonb; a string (value or
  key) holding one anywhere is 400 naming the field. It reached the
  database and came back as a 503 with Retry-After, retried for ever.
"""

import io
import re
from typing import Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

from kpns_site.bodylimit import read_limited

# Twice the device protocol's MAX_DATA_DEPTH (32, devices/protocol.py): a
# push's data at its deepest still fits inside a batch item (three levels
# above it), and json's decoder, which recurses once per level, stays far
# below Python's recursion limit (1,000).
MAX_JSON_DEPTH = 64

NUL_MESSAGE = "Strings cannot contain the NUL character (U+0000)"

# A whole JSON string (brackets in it are text), or a bracket.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_OPENERS = (b"[", b"{")


class JSONBodyParser(JSONParser):
    """DRF's JSON parser with the limits above (DEFAULT_PARSER_CLASSES)."""

    def parse(
        self, stream: Any, media_type: Any = None, parser_context: Any = None
    ) -> Any:
        raw = read_limited(stream)
        if too_deep(raw):
            raise _too_deep_error()
        try:
            data = super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError as exc:
            # Only if a non-UTF-8 charset hid brackets from the scan.
            raise _too_deep_error() from exc
        encoding = str((parser_context or {}).get("encoding") or "utf-8")
        # In UTF-8 a NUL can only come as the escape \u0000 (JSON refuses
        # the raw control character): most bodies skip the walk.
        if b"\\u0000" in raw or encoding.lower() not in ("utf-8", "utf8"):
            check_no_nul(data)
        return data


def too_deep(raw: bytes) -> bool:
    """True when the JSON text nests arrays and objects over MAX_JSON_DEPTH."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_JSON_DEPTH:
        return False  # it cannot nest deeper than it has brackets
    depth = 0
    for match in _TOKENS.finditer(raw):
        token = match.group()
        if token in _OPENERS:
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return True
        elif len(token) == 1:
            depth -= 1
    return False


def check_no_nul(data: Any) -> None:
    """Raise a ValidationError naming the top-level field whose value (or
    key, at any depth) holds U+0000. Iterative: the depth is already bounded,
    but a walk should never depend on that."""
    found = _first_nul(data)
    if found is not None:
        field, path = found
        raise ValidationError({field: [f"{NUL_MESSAGE}: {path}."]})


def _first_nul(data: Any) -> tuple[str, str] | None:
    stack: list[tuple[Any, str, str]] = []
    if isinstance(data, dict):
        for key, value in data.items():
            name = str(key).replace("\x00", "\\u0000")
            if "\x00" in str(key):
                return name, name
            stack.append((value, name, name))
    else:
        stack.append((data, "non_field_errors", "the body"))
    while stack:
        value, field, path = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return field, path
        elif isinstance(value, dict):
            for key, child in value.items():
                child_path = f"{path}.{key}".replace("\x00", "\\u0000")
                if "\x00" in key:
                    return field, child_path
                stack.append((child, field, child_path))
        elif isinstance(value, list):
            stack.extend(
                (child, field, f"{path}[{index}]") for index, child in enumerate(value)
            )
    return None


def _too_deep_error() -> ParseError:
    return ParseError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels.")
