"""autobahn-small-frames-fast-path: which reads it takes, checked against
frames encoded by another implementation of RFC 6455 (websockets).

The server test (test_server_patches.py) shows the path taken by a real
kpns_serve; here every other read must be left to autobahn's parser."""

from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from devices.patches.autobahn import small_messages

texts = st.text(max_size=40).map(str.encode).filter(lambda b: len(b) <= 125)
payloads = st.one_of(
    texts.map(lambda b: (b, False)),
    st.binary(max_size=125).map(lambda b: (b, True)),
)


def masked(payload: bytes, binary: bool, fin: bool = True) -> bytes:
    opcode = Opcode.BINARY if binary else Opcode.TEXT
    return Frame(opcode, payload, fin=fin).serialize(mask=True)


@given(st.lists(payloads, min_size=1, max_size=8))
def test_whole_small_frames_are_read_in_order(messages):
    data = b"".join(masked(payload, binary) for payload, binary in messages)
    assert small_messages(data) == messages


@given(st.lists(payloads, min_size=1, max_size=4), st.data())
def test_a_read_that_ends_inside_a_frame_is_left_to_autobahn(messages, data):
    frames = [masked(payload, binary) for payload, binary in messages]
    whole = b"".join(frames)
    cut = data.draw(st.integers(min_value=1, max_value=len(whole) - 1))
    boundaries = {sum(map(len, frames[:n])) for n in range(len(frames))}
    if cut not in boundaries:  # a read may end between two frames
        assert small_messages(whole[:cut]) is None


def test_large_control_fragmented_and_unmasked_frames_are_left_to_autobahn():
    ack = masked(b'{"type":"ack"}', binary=False)
    others = [
        masked(b"x" * 126, binary=False),  # a 16-bit length
        Frame(Opcode.PING, b"p").serialize(mask=True),
        Frame(Opcode.CLOSE, b"\x03\xe8").serialize(mask=True),
        masked(b"part", binary=False, fin=False),
        Frame(Opcode.CONT, b"rest").serialize(mask=True),
        Frame(Opcode.TEXT, b"plain").serialize(mask=False),
        bytes((ack[0] | 0x40,)) + ack[1:],  # RSV1: an extension's frame
    ]
    for frame in others:
        assert small_messages(frame) is None, frame
        assert small_messages(ack + frame) is None, frame
    assert small_messages(b"") == []


def test_text_that_is_not_utf8_is_left_to_autobahn_which_closes_1007():
    assert small_messages(masked(b"\xff\xfe", binary=False)) is None
    assert small_messages(masked(b"\xff\xfe", binary=True)) == [(b"\xff\xfe", True)]
