"""KMPP and JSON test vectors from the reference codec (devices/protocol.py).

The JavaScript SDK's tests check that they encode these client frames to the
same bytes and decode these server frames to the same values; the Python
SDK's codec is checked against them in tests/sdk/test_vectors.py.
"""

from typing import Any

from devices.delivery.protocol import (
    JSON,
    KMPP,
    Ack,
    AckUpto,
    Error,
    Hello,
    Opened,
    Ping,
    Pong,
    Push,
    Recall,
    Resync,
    Update,
    Welcome,
)

# Every integer width boundary msgpack has, both signs.
INTS = [
    0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53 - 1,
    -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**53 - 1),
]  # fmt: skip
# fixstr, str8, str16 and multi-byte UTF-8.
STRINGS = ["", "a" * 31, "b" * 32, "c" * 255, "d" * 256, "é漢😀" * 3, "x" * 70000]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def _data() -> list[dict[str, Any]]:
    return [
        {},
        {"coupon": "VIP20", "n": 3, "ok": True, "none": None},
        {"ints": INTS, "floats": [1.5, -0.25, 1e300, 3.141592653589793]},
        {"strings": STRINGS[:6]},
        {f"k{i}": i for i in range(15)},  # fixmap
        {f"k{i}": i for i in range(16)},  # map16
        {"list15": list(range(15)), "list16": list(range(16))},  # fixarray, array16
        _nested(32),
    ]


def _client_frames() -> list[Any]:
    frames: list[Any] = [Hello(last_seq=n) for n in INTS if n >= 0]
    frames += [Hello()]
    frames += [
        Ack(id="m1", seq=8),
        Ack(id="3f0c8a52-5a4e-4c1e-9d0a-2b1f6f0d9e11", seq=2**40),
    ]
    # Protocol 1.1's cumulative ack: every seq width (seq starts at 1).
    frames += [AckUpto(seq=n) for n in INTS if n >= 1]
    frames += [Opened(id="i" * 64, seq=65536)]
    frames += [Ping(t=n) for n in INTS] + [Ping()]
    return frames


def _server_frames() -> list[Any]:
    frames: list[Any] = [
        Welcome(device_id="8c1f", last_seq=8, heartbeat=25, max_frame=4096),
        Pong(t=1780000000123),
        Pong(),
        Error(code="invalid_field", message="field 'seq' must be…", ref="ack"),
        Error(code="rate_limited", message="Too many frames; slow down."),
        Resync(reason="backlog_dropped", last_seq=1000),
        # Protocol 1.3: the inbox frames that withdraw or rewrite a push.
        Recall(id="msg-0", seq=2**53 - 1),
        Update(
            id="msg-1",
            seq=300,
            title="é漢😀",
            body="",
            url="https://shop.example/sale",
            image="",
            data=_data()[0],
        ),
    ]
    for index, data in enumerate(_data()):
        frames.append(
            Push(
                id=f"msg-{index}",
                seq=index + 1,
                title=STRINGS[index % 6] or "title",
                body="body",
                url="https://shop.example/sale",
                image="",
                data=data,
                priority="high" if index % 2 else "normal",
                collapse_key=None if index % 3 else "sale",
                sent_at=1780000000000,
                expires_at=1780086400000 + index,
            )
        )
    # Protocol 1.2: an end-to-end encrypted push carries enc as its last field.
    frames.append(
        Push(
            id="msg-enc",
            seq=99,
            title="",
            body="",
            url="",
            image="",
            data={},
            priority="high",
            collapse_key=None,
            sent_at=1780000000000,
            expires_at=1780086400000,
            enc={"kid": "k1", "epk": "BA", "iv": "AAECAwQFBgcICQoL", "ct": "q-_0"},
        )
    )
    for text in STRINGS:
        frames.append(Error(code="e", message=text, ref=None))
    return frames


def _fields(frame: Any) -> dict[str, Any]:
    return {"type": frame.TYPE, **{n: getattr(frame, n) for n in frame.__slots__}}


def vectors() -> dict[str, list[dict[str, Any]]]:
    def one(frame: Any) -> dict[str, Any]:
        return {
            "frame": _fields(frame),
            "kmpp": KMPP.encode(frame).hex(),
            "json": JSON.encode(frame),
        }

    return {
        "client": [one(f) for f in _client_frames()],
        "server": [one(f) for f in _server_frames()],
    }
