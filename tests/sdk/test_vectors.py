"""The Python SDK's codec against the reference vectors (tests/sdk/vectors.py).

The JavaScript SDK checks the same vectors in sdk/js/test/codec.test.mjs.
"""

import json

import pytest

from kpns_sdk.protocol import Ack, AckUpto, Hello, Opened, Ping, codec_for
from tests.sdk.vectors import vectors

VECTORS = vectors()
CLIENT_TYPES = {v["frame"]["type"] for v in VECTORS["client"]}


CLIENT_FRAMES = {cls.TYPE: cls for cls in (Hello, Ack, AckUpto, Opened, Ping)}


def _frame(fields):
    cls = CLIENT_FRAMES[fields["type"]]
    return cls(**{k: v for k, v in fields.items() if k != "type"})


def test_the_vectors_cover_every_client_frame_type():
    assert set(CLIENT_FRAMES) == CLIENT_TYPES


@pytest.mark.parametrize("encoding", ["json", "kmpp"])
def test_the_sdk_codec_encodes_client_frames_as_the_vectors(encoding):
    codec = codec_for(encoding)
    for vector in VECTORS["client"]:
        frame = _frame(vector["frame"])
        encoded = codec.encode(frame)
        if encoding == "kmpp":
            assert encoded.hex() == vector["kmpp"], vector["frame"]
        else:
            assert json.loads(encoded) == json.loads(vector["json"])
        assert codec.decode_client(encoded) == frame  # what the server reads


def test_ack_upto_bytes_as_documented():
    vector = next(v for v in VECTORS["client"] if v["frame"] == {
        "type": "ack_upto", "seq": 2**53 - 1})  # fmt: skip
    assert vector["kmpp"] == "0591cf001fffffffffffff"
    assert codec_for("kmpp").encode(AckUpto(seq=5)) == bytes.fromhex("059105")
    assert codec_for("json").encode(AckUpto(seq=5)) == '{"type":"ack_upto","seq":5}'
