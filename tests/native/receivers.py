"""Local, standards-conformant provider receivers for the native push tests.

Each is an ASGI app served by hypercorn on a free loopback port, in a
thread with its own event loop, and checks what a real provider checks:

- WebPushService: the VAPID JWT (RFC 8292: ES256 with the key in ``k``,
  ``aud`` the endpoint's origin, ``exp`` in the future and within 24 h) and
  the headers of RFC 8030; it decrypts the aes128gcm body (RFC 8291, written
  here from the RFC, independently of the sender's library) with the
  subscription's private key and keeps the plaintext for the test.
- FcmService: the OAuth2 JWT-bearer grant (RS256 with the service
  account's key, iss, aud, scope, lifetime) and the v1 message shape, with
  a bearer token it issued.
- ApnsService: HTTP/2 only; the provider JWT (ES256, kid, iss, iat) and
  the apns-* headers.

A receiver answers what it is told (``reply_next``/``reply_always``): 410,
429 with Retry-After, 500, UNREGISTERED, BadDeviceToken... A request that
breaks the protocol is answered 400 and recorded in ``errors``.
"""

import asyncio
import base64
import json
import re
import secrets
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypercorn.asyncio import serve
from hypercorn.config import Config


def b64d(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64e(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode()


class ProtocolError(Exception):
    """What the receiver refuses, with the reason the test reads."""


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering: a slow provider.
    delay: float = 0.0


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    plaintext: bytes | None = None
    json: Any = None
    # What the receiver answered.
    status: int = 0


class Receiver:
    """The shared part: serving, scripted replies, what was received."""

    http2_only = False

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._replies: list[Reply] = []
        self._always: Reply | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.disconnects = 0
        self._lock = threading.Lock()
        self.url = ""

    # Scripting --------------------------------------------------------
    def reply_next(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def reply_always(self, reply: Reply | None) -> None:
        self._always = reply

    def _scripted(self) -> Reply | None:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        return self._always

    # Serving ----------------------------------------------------------
    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.set_inheritable(True)
        self.address = sock.getsockname()
        self.url = f"http://127.0.0.1:{self.address[1]}"
        config = Config()
        # hypercorn takes the descriptor over and closes it when it stops.
        config.bind = [f"fd://{sock.detach()}"]
        config.loglevel = "WARNING"
        config.accesslog = None
        # hypercorn closes a connection after 1,000 requests (an HTTP/1
        # keep-alive cap it applies to HTTP/2 too): the GOAWAY cut off the
        # streams in flight, whose bodies then read as empty. Push services
        # keep a connection for as long as the client does.
        config.keep_alive_max_requests = 2**31
        started = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            loop.call_soon(started.set)
            loop.run_until_complete(
                serve(self, config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
            )
            loop.close()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        started.wait(5)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(self.address, 0.2).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("receiver did not start")

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                # The client went before its body ended: nothing to answer.
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        record = Received(time.monotonic(), scope["path"], headers, body)
        try:
            if self.http2_only and scope["http_version"] != "2":
                raise ProtocolError(f"HTTP/{scope['http_version']}, not HTTP/2")
            reply = self.handle(record)
        except ProtocolError as exc:
            self.errors.append(str(exc))
            reply = Reply(400, {"reason": str(exc)})
        record.status = reply.status
        self.received.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await self._answer(send, reply)
        finally:
            self.in_flight -= 1

    async def _answer(self, send: Any, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode() if reply.body is not None else b""
        headers = [(k.lower().encode(), v.encode()) for k, v in reply.headers.items()]
        if payload:
            headers.append((b"content-type", b"application/json"))
        await send(
            {"type": "http.response.start", "status": reply.status, "headers": headers}
        )
        await send({"type": "http.response.body", "body": payload})

    def handle(self, record: Received) -> Reply:
        raise NotImplementedError

    def __enter__(self) -> "Receiver":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# JWT checks, from RFC 7515/7518 -----------------------------------------


def jwt_parts(token: str) -> tuple[dict, dict, bytes, bytes]:
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(b64d(header_b64))
        claims = json.loads(b64d(claims_b64))
    except ValueError as exc:
        raise ProtocolError(f"malformed JWT: {exc}") from exc
    return header, claims, f"{header_b64}.{claims_b64}".encode(), b64d(signature_b64)


def es256_verify(
    token: str, public_key: ec.EllipticCurvePublicKey
) -> tuple[dict, dict]:
    header, claims, signed, signature = jwt_parts(token)
    if header.get("alg") != "ES256" or len(signature) != 64:
        raise ProtocolError(f"not ES256: {header}")
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise ProtocolError("bad ES256 signature") from exc
    return header, claims


def rs256_verify(token: str, public_key: rsa.RSAPublicKey) -> tuple[dict, dict]:
    header, claims, signed, signature = jwt_parts(token)
    if header.get("alg") != "RS256":
        raise ProtocolError(f"not RS256: {header}")
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise ProtocolError("bad RS256 signature") from exc
    return header, claims


# Web Push -----------------------------------------------------------------


def aes128gcm_decrypt(
    body: bytes, receiver_key: ec.EllipticCurvePrivateKey, auth_secret: bytes
) -> bytes:
    """RFC 8291 §3-4 and RFC 8188 §2: one record, padding delimiter 0x02."""
    salt, rs, idlen = body[:16], int.from_bytes(body[16:20], "big"), body[20]
    if idlen != 65:
        raise ProtocolError(f"keyid is {idlen} bytes, not a P-256 point")
    sender_public = body[21 : 21 + idlen]
    ciphertext = body[21 + idlen :]
    if len(ciphertext) > rs:
        raise ProtocolError("more than one record")
    ua_public = receiver_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), sender_public)
    shared = receiver_key.exchange(ec.ECDH(), peer)
    ikm = HKDF(
        hashes.SHA256(),
        32,
        salt=auth_secret,
        info=b"WebPush: info\x00" + ua_public + sender_public,
    ).derive(shared)
    cek = HKDF(
        hashes.SHA256(), 16, salt=salt, info=b"Content-Encoding: aes128gcm\x00"
    ).derive(ikm)
    nonce = HKDF(
        hashes.SHA256(), 12, salt=salt, info=b"Content-Encoding: nonce\x00"
    ).derive(ikm)
    try:
        padded = AESGCM(cek).decrypt(nonce, ciphertext, None)
    except Exception as exc:
        raise ProtocolError("aes128gcm record does not decrypt") from exc
    plaintext = padded.rstrip(b"\x00")
    if not plaintext.endswith(b"\x02"):
        raise ProtocolError("last record lacks the 0x02 delimiter")
    return plaintext[:-1]


@dataclass
class TestSubscription:
    endpoint: str
    p256dh: str
    auth: str
    private_key: ec.EllipticCurvePrivateKey
    auth_secret: bytes


class WebPushService(Receiver):
    """A push service (RFC 8030) for subscriptions made by the test."""

    def __init__(self) -> None:
        super().__init__()
        self.subscriptions: dict[str, TestSubscription] = {}

    def subscribe(self) -> TestSubscription:
        key = ec.generate_private_key(ec.SECP256R1())
        auth = secrets.token_bytes(16)
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        name = secrets.token_urlsafe(16)
        sub = TestSubscription(
            f"{self.url}/push/{name}", b64e(public), b64e(auth), key, auth
        )
        self.subscriptions[name] = sub
        return sub

    def handle(self, record: Received) -> Reply:
        name = record.path.removeprefix("/push/")
        sub = self.subscriptions.get(name)
        if sub is None:
            return Reply(404)
        self._check_vapid(record.headers.get("authorization", ""))
        headers = record.headers
        if headers.get("content-encoding") != "aes128gcm":
            raise ProtocolError("Content-Encoding is not aes128gcm")
        if not headers.get("ttl", "").isdigit():
            raise ProtocolError("TTL missing (RFC 8030 §5.2)")
        if headers.get("urgency", "normal") not in (
            "very-low",
            "low",
            "normal",
            "high",
        ):
            raise ProtocolError("bad Urgency")
        topic = headers.get("topic")
        if topic is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", topic):
            raise ProtocolError("bad Topic (RFC 8030 §5.4)")
        if len(record.body) > 4096:
            return Reply(413)
        record.plaintext = aes128gcm_decrypt(
            record.body, sub.private_key, sub.auth_secret
        )
        return self._scripted() or Reply(201, headers={"Location": f"{self.url}/m/1"})

    def _check_vapid(self, value: str) -> None:
        match = re.fullmatch(r"vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)", value)
        if not match:
            raise ProtocolError("Authorization is not 'vapid t=..., k=...'")
        public = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b64d(match.group(2))
        )
        header, claims = es256_verify(match.group(1), public)
        now = time.time()
        if claims.get("aud") != self.url:
            raise ProtocolError(f"aud {claims.get('aud')!r} is not {self.url}")
        if not now < claims.get("exp", 0) <= now + 86400:
            raise ProtocolError("exp not within the next 24 hours")
        if not str(claims.get("sub", "")).startswith(("mailto:", "https:")):
            raise ProtocolError("sub is not a mailto: or https: URI")
        self.vapid_keys_seen = match.group(2)


# FCM ---------------------------------------------------------------------

FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"


def fcm_error(status: int, code: str, error_code: str | None = None) -> Reply:
    details = []
    if error_code:
        details.append(
            {
                "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                "errorCode": error_code,
            }
        )
    return Reply(
        status,
        {
            "error": {
                "code": status,
                "status": code,
                "message": code,
                "details": details,
            }
        },
    )


class FcmService(Receiver):
    """The OAuth2 token endpoint and FCM HTTP v1 ``messages:send``."""

    def __init__(self, project_id: str = "kpns-test") -> None:
        super().__init__()
        self.project_id = project_id
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.client_email = f"kpns@{project_id}.iam.gserviceaccount.com"
        self.tokens: set[str] = set()
        self.exchanges = 0

    def service_account(self) -> dict[str, str]:
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": self.client_email,
            "token_uri": f"{self.url}/token",
        }

    def handle(self, record: Received) -> Reply:
        if record.path == "/token":
            return self._token(record)
        expected = f"/v1/projects/{self.project_id}/messages:send"
        if record.path != expected:
            return fcm_error(404, "NOT_FOUND")
        if (
            record.headers.get("authorization", "").removeprefix("Bearer ")
            not in self.tokens
        ):
            return fcm_error(401, "UNAUTHENTICATED")
        record.json = json.loads(record.body)
        self._check_message(record.json)
        return self._scripted() or Reply(
            200, {"name": f"projects/{self.project_id}/messages/{uuid.uuid4()}"}
        )

    def _token(self, record: Received) -> Reply:
        form = {k: v[0] for k, v in parse_qs(record.body.decode()).items()}
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            raise ProtocolError("grant_type is not jwt-bearer")
        _, claims = rs256_verify(form.get("assertion", ""), self.key.public_key())
        now = time.time()
        if claims.get("iss") != self.client_email:
            raise ProtocolError("iss is not the service account")
        if claims.get("aud") != f"{self.url}/token":
            raise ProtocolError("aud is not the token endpoint")
        if FCM_SCOPE not in str(claims.get("scope", "")).split():
            raise ProtocolError("scope lacks firebase.messaging")
        if not (claims["exp"] > now and claims["exp"] - claims["iat"] <= 3600):
            raise ProtocolError("assertion expired or lives over an hour")
        self.exchanges += 1
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.tokens.add(token)
        return Reply(
            200, {"access_token": token, "expires_in": 3599, "token_type": "Bearer"}
        )

    def _check_message(self, body: dict) -> None:
        message = body.get("message")
        if not isinstance(message, dict) or not isinstance(message.get("token"), str):
            raise ProtocolError("message.token missing")
        targets = {"token", "topic", "condition"} & set(message)
        if len(targets) != 1:
            raise ProtocolError("exactly one target expected")
        allowed = {
            "token",
            "data",
            "notification",
            "android",
            "apns",
            "webpush",
            "fcm_options",
            "name",
        }
        if set(message) - allowed:
            raise ProtocolError(f"unknown message fields {set(message) - allowed}")
        data = message.get("data", {})
        if not all(isinstance(v, str) for v in data.values()):
            raise ProtocolError("data values must be strings")
        if set(message.get("notification", {})) - {"title", "body", "image"}:
            raise ProtocolError("unknown notification fields")
        android = message.get("android", {})
        if "ttl" in android and not re.fullmatch(r"\d+(\.\d{1,9})?s", android["ttl"]):
            raise ProtocolError("android.ttl is not a Duration")
        if android.get("priority", "NORMAL") not in ("NORMAL", "HIGH"):
            raise ProtocolError("android.priority is not NORMAL or HIGH")


# APNs --------------------------------------------------------------------


class ApnsService(Receiver):
    """APNs' provider API over HTTP/2, with token-based authentication."""

    http2_only = True

    def __init__(self, team_id: str = "TEAM123456", key_id: str = "KEY1234567") -> None:
        super().__init__()
        self.team_id = team_id
        self.key_id = key_id
        self.bundle_id = "com.example.kpns"
        self.key = ec.generate_private_key(ec.SECP256R1())

    def p8(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def handle(self, record: Received) -> Reply:
        token = record.path.removeprefix("/3/device/")
        if not re.fullmatch(r"[0-9a-fA-F]{64,200}", token):
            return Reply(400, {"reason": "BadDeviceToken"})
        headers = record.headers
        jwt = headers.get("authorization", "").removeprefix("bearer ")
        header, claims = es256_verify(jwt, self.key.public_key())
        if header.get("kid") != self.key_id or claims.get("iss") != self.team_id:
            return Reply(403, {"reason": "InvalidProviderToken"})
        if time.time() - claims.get("iat", 0) > 3600:
            return Reply(403, {"reason": "ExpiredProviderToken"})
        if headers.get("apns-topic") != self.bundle_id:
            return Reply(400, {"reason": "TopicDisallowed"})
        push_type = headers.get("apns-push-type")
        if push_type not in ("alert", "background"):
            raise ProtocolError(f"apns-push-type {push_type!r}")
        priority = headers.get("apns-priority", "10")
        if priority not in ("5", "10") or (
            push_type == "background" and priority != "5"
        ):
            return Reply(400, {"reason": "BadPriority"})
        if not headers.get("apns-expiration", "0").isdigit():
            return Reply(400, {"reason": "BadExpirationDate"})
        if len(headers.get("apns-collapse-id", "").encode()) > 64:
            return Reply(400, {"reason": "BadCollapseId"})
        if "apns-id" in headers:
            uuid.UUID(headers["apns-id"])
        if len(record.body) > 4096:
            return Reply(413, {"reason": "PayloadTooLarge"})
        record.json = json.loads(record.body)
        if "aps" not in record.json:
            raise ProtocolError("payload lacks aps")
        reply = self._scripted() or Reply(200)
        reply.headers.setdefault("apns-id", headers.get("apns-id", str(uuid.uuid4())))
        return reply
