"""End-to-end encrypted pushes: the device key pair and the KPNS-E2EE-1 scheme.

The scheme, byte by byte, is in docs/e2ee.md; the JavaScript SDK implements
the same with WebCrypto (devices/static/kpns/kpns.js) and both are checked
against one fixed test vector (tests/sdk/test_e2ee_vectors.py).

    shared = ECDH-P256(ephemeral private, device public)        32 bytes, X
    key    = HKDF-SHA256(ikm=shared, salt=epk || device public,
                         info="KPNS-E2EE-1", length=16)
    ct     = AES-128-GCM(key, iv (12 random bytes), plaintext,
                         aad=kid as UTF-8)                     || 16-byte tag

Public keys travel as uncompressed SEC1 points (65 bytes, 0x04 || X || Y);
every binary value as unpadded base64url.
"""

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SCHEME = "KPNS-E2EE-1"
INFO = SCHEME.encode()
KEY_BYTES = 16  # AES-128
IV_BYTES = 12
TAG_BYTES = 16
POINT_BYTES = 65  # uncompressed P-256 point
# Fields of the `encrypted` object of a push, in documentation order.
FIELDS = ("kid", "epk", "iv", "ct")
# The visible content of the push is moved into the plaintext.
CONTENT_FIELDS = ("title", "body", "url", "image", "data")


class DecryptError(Exception):
    """The push cannot be decrypted: unknown key id or a failed check."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _point(public: ec.EllipticCurvePublicKey) -> bytes:
    return public.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def key_id(public_point: bytes) -> str:
    """The key id SDKs use: the first 16 bytes of SHA-256 of the point."""
    return b64url(hashlib.sha256(public_point).digest()[:16])


def _derive(shared: bytes, epk: bytes, device_point: bytes) -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=epk + device_point,
        info=INFO,
    )
    return hkdf.derive(shared)


def encrypt_for_device(
    public_key: str,
    payload: dict[str, Any],
    *,
    kid: str | None = None,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,
    iv: bytes | None = None,
) -> dict[str, str]:
    """The reference helper for an integrator's backend: `payload` (title,
    body, url, image, data) encrypted to one device's public key (base64url
    point, as the key directory serves it). Returns the push's `encrypted`
    object. `ephemeral` and `iv` are for test vectors only: never reuse them.
    """
    device_point = unb64url(public_key)
    device_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), device_point
    )
    kid = kid or key_id(device_point)
    ephemeral = ephemeral or ec.generate_private_key(ec.SECP256R1())
    epk = _point(ephemeral.public_key())
    key = _derive(ephemeral.exchange(ec.ECDH(), device_public), epk, device_point)
    iv = iv if iv is not None else os.urandom(IV_BYTES)
    plaintext = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    ct = AESGCM(key).encrypt(iv, plaintext.encode(), kid.encode())
    return {"kid": kid, "epk": b64url(epk), "iv": b64url(iv), "ct": b64url(ct)}


@dataclass(frozen=True)
class DeviceKey:
    """A device's key pair; the private half never leaves the device."""

    private: ec.EllipticCurvePrivateKey

    @classmethod
    def generate(cls) -> "DeviceKey":
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_stored(cls, text: str) -> "DeviceKey":
        private = serialization.load_pem_private_key(text.encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        return cls(private)

    def stored(self) -> str:
        """PEM (PKCS#8) for the SDK's store, which the device keeps private."""
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    @property
    def public_point(self) -> bytes:
        return _point(self.private.public_key())

    @property
    def public_key(self) -> str:
        return b64url(self.public_point)

    @property
    def kid(self) -> str:
        return key_id(self.public_point)

    def decrypt(self, encrypted: dict[str, Any]) -> dict[str, Any]:
        """The payload object of a push's `encrypted` field."""
        if encrypted.get("kid") != self.kid:
            raise DecryptError(f"not for this key (kid {encrypted.get('kid')!r})")
        try:
            epk = unb64url(encrypted["epk"])
            sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), epk)
            key = _derive(
                self.private.exchange(ec.ECDH(), sender), epk, self.public_point
            )
            plain = AESGCM(key).decrypt(
                unb64url(encrypted["iv"]),
                unb64url(encrypted["ct"]),
                encrypted["kid"].encode(),
            )
            payload = json.loads(plain)
        except (InvalidTag, ValueError, KeyError, TypeError) as exc:
            raise DecryptError(f"cannot decrypt: {type(exc).__name__}") from exc
        if not isinstance(payload, dict):
            raise DecryptError("the plaintext is not a JSON object")
        return payload


def decrypt_with(keys: list[DeviceKey], encrypted: dict[str, Any]) -> dict[str, Any]:
    """Decrypt with whichever of the device's keys (current, previous) it names."""
    for key in keys:
        if key.kid == encrypted.get("kid"):
            return key.decrypt(encrypted)
    raise DecryptError(f"no key with kid {encrypted.get('kid')!r} on this device")
