"""The push endpoints: POST /api/v1/pushes and /pushes/batch (docs/api.md)."""

import threading
from typing import Any

from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from devices.api.base import (
    ServerAPIView,
    idempotent,
)
from devices.api.problems import problem_body
from devices.api.pushserializers import (
    BatchResultSerializer,
    BatchSerializer,
    PushAcceptedSerializer,
    PushSerializer,
    push_plain,
)
from devices.api.schema import IDEMPOTENCY_KEY, problem
from devices.conf import kpns_setting
from devices.delivery import groupcommit, targeting

_checkers = threading.local()


def push_checker() -> PushSerializer:
    """This thread's push serializer: a new instance deep-copies its declared
    fields, which cost more than sending the push (docs/benchmarks.md).
    Validation keeps no state on the instance; threads do not share one."""
    checker = getattr(_checkers, "push", None)
    if checker is None:
        checker = _checkers.push = PushSerializer()
    return checker


@extend_schema(tags=["pushes"])
class PushView(ServerAPIView):
    scopes = {"POST": "push:send"}

    @extend_schema(
        summary="Send a push",
        description="Queues one message for the devices named by exactly one of "
        "device_ids, aliases, tags, audience or segment, and answers at once with its "
        "id. Devices online get it within milliseconds; the others when they "
        "reconnect, until `ttl_seconds` pass. At most KPNS_API_MAX_PUSH_DEVICES "
        "(10,000) devices: larger audiences are campaigns. Not frequency-capped "
        "unless `respect_frequency_cap` is true: then devices at the app's cap "
        "are left out (`capped`) and the push counts toward it.",
        parameters=[IDEMPOTENCY_KEY],
        request=PushSerializer,
        responses={202: PushAcceptedSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        if groupcommit.enabled(transaction.get_connection().in_atomic_block):
            # Concurrent pushes of this process share one commit; this one's
            # checks run first, on its own (devices/delivery/groupcommit.py).
            with groupcommit.push_group().arriving() as arrival:
                data = push_checker().run_validation(request.data)
                result = targeting.push_send(app=self.app, group=arrival, **data)
        else:
            data = push_checker().run_validation(request.data)
            result = targeting.push_send(app=self.app, **data)
        assert result.message is not None
        return Response(
            {
                "message_id": str(result.message.id),
                "targets": result.targets,
                "capped": result.capped,
            },
            status=status.HTTP_202_ACCEPTED,
        )


@extend_schema(tags=["pushes"])
class PushBatchView(ServerAPIView):
    scopes = {"POST": "push:send"}

    @extend_schema(
        summary="Send many pushes",
        description="Each item is a push as for `POST /api/v1/pushes`, sent on "
        "its own: the answer is 200 with one result per item, in order, each "
        "with its own status (202 queued, 400 invalid). A malformed batch "
        "(not a list, empty, over the limit, a NUL character or nesting over "
        "64 levels anywhere) is a 400 for the whole request.",
        parameters=[IDEMPOTENCY_KEY],
        request=BatchSerializer,
        responses={200: BatchResultSerializer, **problem(422)},
    )
    @idempotent
    def post(self, request: Request) -> Response:
        incoming = BatchSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        items = incoming.validated_data["messages"]
        limit = kpns_setting("API_MAX_BATCH")
        if len(items) > limit:
            raise ValidationError({"messages": [f"At most {limit} messages."]})
        checker = push_checker()
        parsed: list[tuple[dict[str, Any] | None, Any]] = []
        for item in items:
            try:
                plain = push_plain(item) if isinstance(item, dict) else None
                parsed.append((plain or checker.run_validation(item), None))
            except ValidationError as exc:
                parsed.append((None, exc.detail))
        valid = [data for data, _errors in parsed if data is not None]
        sent = iter(targeting.push_send_batch(app=self.app, items=valid))
        results = []
        for index, (data, errors) in enumerate(parsed):
            if data is None:
                results.append(_item_error(index, errors))
                continue
            result = next(sent)
            if result.errors or result.message is None:
                results.append(_item_error(index, result.errors))
                continue
            results.append(
                {
                    "index": index,
                    "status": 202,
                    "message_id": str(result.message.id),
                    "targets": result.targets,
                    "error": None,
                }
            )
        return Response({"results": results})


def _item_error(index: int, errors: Any) -> dict[str, Any]:
    return {
        "index": index,
        "status": 400,
        "message_id": None,
        "targets": None,
        "error": problem_body(400, "Invalid request", "See errors.", errors=errors),
    }
