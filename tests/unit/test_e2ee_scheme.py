"""KPNS-E2EE-1 (docs/e2ee.md) against its fixed test vector, which the
JavaScript SDK checks too (sdk/js/test/e2ee.test.mjs), and the push frame's
optional `enc` field in both codecs."""

import json
from pathlib import Path

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from devices.delivery.protocol import JSON, KMPP, ProtocolError, Push
from kpns_sdk.e2ee import (
    DecryptError,
    DeviceKey,
    _derive,
    b64url,
    decrypt_with,
    encrypt_for_device,
    key_id,
    unb64url,
)

VECTOR = json.loads(
    (Path(__file__).parents[1] / "sdk" / "e2ee_vector.json").read_text()
)


def _private(name: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(
        int.from_bytes(unb64url(VECTOR[name]), "big"), ec.SECP256R1()
    )


def test_the_reference_helper_reproduces_the_vector_byte_for_byte():
    device = DeviceKey(_private("device_private_d"))
    assert device.public_key == VECTOR["device_public_key"]
    assert device.kid == VECTOR["kid"] == key_id(device.public_point)
    encrypted = encrypt_for_device(
        VECTOR["device_public_key"],
        VECTOR["payload"],
        ephemeral=_private("ephemeral_private_d"),
        iv=unb64url(VECTOR["iv"]),
    )
    assert encrypted == VECTOR["encrypted"]


def test_the_documented_intermediate_values_hold():
    device = DeviceKey(_private("device_private_d"))
    epk = unb64url(VECTOR["encrypted"]["epk"])
    shared = device.private.exchange(
        ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), epk)
    )
    assert shared.hex() == VECTOR["shared_secret_hex"]
    assert (epk + device.public_point).hex() == VECTOR["hkdf_salt_hex"]
    assert _derive(shared, epk, device.public_point).hex() == VECTOR["aes_key_hex"]
    # The ciphertext is the plaintext's length plus the 16-byte GCM tag.
    ct = unb64url(VECTOR["encrypted"]["ct"])
    assert len(ct) == len(VECTOR["plaintext"].encode()) + 16


def test_the_device_decrypts_the_vector():
    device = DeviceKey(_private("device_private_d"))
    assert device.decrypt(VECTOR["encrypted"]) == VECTOR["payload"]


def test_a_changed_byte_or_another_kid_is_refused_not_misread():
    device = DeviceKey(_private("device_private_d"))
    ct = bytearray(unb64url(VECTOR["encrypted"]["ct"]))
    ct[0] ^= 1
    with pytest.raises(DecryptError):
        device.decrypt({**VECTOR["encrypted"], "ct": b64url(bytes(ct))})
    with pytest.raises(DecryptError):
        device.decrypt({**VECTOR["encrypted"], "kid": "other"})


def test_a_rotated_device_still_decrypts_with_its_previous_key():
    old, new = DeviceKey.generate(), DeviceKey.generate()
    queued = encrypt_for_device(old.public_key, {"title": "queued"})
    assert decrypt_with([new, old], queued) == {"title": "queued"}
    with pytest.raises(DecryptError, match="no key"):
        decrypt_with([new], queued)


def test_a_stored_key_round_trips():
    key = DeviceKey.generate()
    assert DeviceKey.from_stored(key.stored()).public_key == key.public_key


def _push(enc=None) -> Push:
    return Push(
        id="m1", seq=7, title="", body="", url="", image="", data={},
        priority="normal", collapse_key=None, sent_at=1, expires_at=2, enc=enc,
    )  # fmt: skip


def test_a_plain_push_carries_no_enc_in_either_codec():
    assert "enc" not in json.loads(JSON.encode(_push()))
    assert len(msgpack.unpackb(KMPP.encode(_push())[1:])) == 11


def test_an_encrypted_push_carries_enc_last_and_decodes_in_both_codecs():
    enc = VECTOR["encrypted"]
    for codec in (JSON, KMPP):
        encoded = codec.encode(_push(enc))
        assert codec.decode_server(encoded) == _push(enc)
    assert json.loads(JSON.encode(_push(enc)))["enc"] == enc
    items = msgpack.unpackb(KMPP.encode(_push(enc))[1:])
    assert len(items) == 12 and items[-1] == enc


def test_the_kmpp_bytes_of_a_small_encrypted_push_are_as_documented():
    enc = {"kid": "k1", "epk": "AQ", "iv": "Ag", "ct": "Aw"}
    frame = KMPP.encode(_push(enc))
    assert frame.hex() == (
        "129ca26d3107a0a0a0a080a66e6f726d616cc00102"
        "84a36b6964a26b31a365706ba24151a26976a24167a26374a24177"
    )
    assert JSON.encode(_push(enc)) == (
        '{"type":"push","seq":7,"id":"m1","title":"","body":"","url":"",'
        '"image":"","data":{},"priority":"normal","collapse_key":null,'
        '"sent_at":1,"expires_at":2,'
        '"enc":{"kid":"k1","epk":"AQ","iv":"Ag","ct":"Aw"}}'
    )


@pytest.mark.parametrize(
    "enc",
    [
        {"kid": "k"},
        {"kid": "k", "epk": "a", "iv": "b", "ct": "c d"},
        {"kid": "k", "epk": "a", "iv": "b", "ct": 3},
        "abc",
    ],
)
def test_a_malformed_enc_is_an_invalid_field(enc):
    obj = json.loads(JSON.encode(_push()))
    obj["enc"] = enc
    with pytest.raises(ProtocolError) as caught:
        JSON.decode_server(json.dumps(obj))
    assert caught.value.code == "invalid_field"
