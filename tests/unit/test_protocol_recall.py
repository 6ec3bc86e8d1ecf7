"""Protocol 1.3: the recall and update inbox frames in both codecs."""

import json

import msgpack
import pytest

from devices.delivery.protocol import (
    JSON,
    KMPP,
    ProtocolError,
    Push,
    Recall,
    Update,
    inbox_frame,
)

UPDATE_FIELDS = {
    "type": "update",
    "id": "m-1",
    "title": "Sale ends Sunday",
    "body": "",
    "url": "",
    "image": "",
    "data": {"k": 1},
}


def test_recall_is_encoded_as_documented_in_json_and_kmpp():
    frame = Recall(id="m-1", seq=7)
    assert JSON.encode(frame) == '{"type":"recall","seq":7,"id":"m-1"}'
    assert KMPP.encode(frame) == bytes.fromhex("1692a36d2d3107")


def test_update_is_encoded_as_documented_in_json_and_kmpp():
    frame = inbox_frame(8, UPDATE_FIELDS)
    assert isinstance(frame, Update)
    assert json.loads(JSON.encode(frame)) == {**UPDATE_FIELDS, "seq": 8}
    packed = KMPP.encode(frame)
    assert packed[0] == 0x17
    assert msgpack.unpackb(packed[1:]) == [
        "m-1",
        8,
        "Sale ends Sunday",
        "",
        "",
        "",
        {"k": 1},
    ]


@pytest.mark.parametrize("codec", [JSON, KMPP], ids=["json", "kmpp"])
@pytest.mark.parametrize(
    "frame",
    [Recall(id="m-1", seq=1), inbox_frame(2**53 - 1, UPDATE_FIELDS)],
    ids=["recall", "update"],
)
def test_inbox_frames_round_trip(codec, frame):
    assert codec.decode_server(codec.encode(frame)) == frame


@pytest.mark.parametrize("codec", [JSON, KMPP], ids=["json", "kmpp"])
def test_a_template_of_recall_fields_renders_each_seq_like_encode(codec):
    template = codec.push_template({"type": "recall", "id": "m-1"})
    for seq in (1, 300, 70000, 2**40):
        assert template.render(seq) == codec.encode(Recall(id="m-1", seq=seq))


def test_fields_without_type_are_a_push():
    fields = {
        "id": "p",
        "title": "t",
        "body": "",
        "url": "",
        "image": "",
        "data": {},
        "priority": "normal",
        "collapse_key": None,
        "sent_at": 1,
        "expires_at": 2,
    }
    assert isinstance(inbox_frame(3, fields), Push)


def test_a_recall_with_seq_zero_or_no_id_is_refused_by_the_decoder():
    with pytest.raises(ProtocolError) as caught:
        JSON.decode_server('{"type":"recall","seq":0,"id":"m"}')
    assert (caught.value.code, caught.value.ref) == ("invalid_field", "recall")
    with pytest.raises(ProtocolError):
        KMPP.decode_server(bytes((0x16,)) + msgpack.packb([3]))


def test_devices_cannot_send_recall_frames():
    with pytest.raises(ProtocolError) as caught:
        JSON.decode_client('{"type":"recall","seq":1,"id":"m"}')
    assert caught.value.code == "unknown_type"
