// End-to-end encrypted pushes (docs/e2ee.md) with WebCrypto: the shared test
// vector (tests/sdk/e2ee_vector.json, which the Python reference helper
// reproduces byte for byte), key generation, and a live round trip.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, test } from "node:test";
import WebSocket from "ws";

import {
  e2eeDecrypt, e2eeGenerateKey, e2eeKeyFrom, KpnsClient, MemoryKeyStore, MemoryStorage,
} from "../../../devices/static/kpns/kpns.js";
import { CLIENT_KEY, LIVE_SKIP, SERVER, encryptedPush, waitFor, waitForState } from "../support/live.mjs";

const VECTOR = JSON.parse(readFileSync(new URL("../../../tests/sdk/e2ee_vector.json", import.meta.url), "utf8"));
const bytes = (b64url) => new Uint8Array(Buffer.from(b64url, "base64url"));

async function vectorKey() {
  const point = bytes(VECTOR.device_public_key);
  const jwk = {
    kty: "EC", crv: "P-256", d: VECTOR.device_private_d,
    x: Buffer.from(point.subarray(1, 33)).toString("base64url"),
    y: Buffer.from(point.subarray(33, 65)).toString("base64url"),
  };
  const privateKey = await crypto.subtle.importKey("jwk", jwk, { name: "ECDH", namedCurve: "P-256" }, false, ["deriveBits"]);
  return e2eeKeyFrom(privateKey, point);
}

describe("KPNS-E2EE-1 test vector", () => {
  test("the key id is the one the Python SDK computes", async () => {
    const key = await vectorKey();
    assert.equal(key.kid, VECTOR.kid);
    assert.equal(key.publicKey, VECTOR.device_public_key);
  });

  test("WebCrypto decrypts the vector to its payload", async () => {
    assert.deepEqual(await e2eeDecrypt([await vectorKey()], VECTOR.encrypted), VECTOR.payload);
  });

  test("a changed ciphertext or an unknown kid is refused", async () => {
    const key = await vectorKey();
    const ct = bytes(VECTOR.encrypted.ct);
    ct[0] ^= 1;
    const tampered = { ...VECTOR.encrypted, ct: Buffer.from(ct).toString("base64url") };
    await assert.rejects(e2eeDecrypt([key], tampered));
    await assert.rejects(e2eeDecrypt([key], { ...VECTOR.encrypted, kid: "other" }), /no key/);
  });

  test("a generated private key cannot be exported", async () => {
    const key = await e2eeGenerateKey();
    assert.equal(key.privateKey.extractable, false);
    await assert.rejects(crypto.subtle.exportKey("pkcs8", key.privateKey));
    assert.equal(bytes(key.publicKey).length, 65);
  });
});

const clients = [];
after(async () => {
  await Promise.all(clients.map((client) => client.stop()));
});

for (const encoding of ["json", "kmpp"]) {
  describe(`${encoding}: an encrypted push, live`, { skip: LIVE_SKIP }, () => {
    test("is decrypted before the handler, and a rotated-away key is reported", async () => {
      const keyStore = new MemoryKeyStore();
      const client = new KpnsClient({
        server: SERVER, clientKey: CLIENT_KEY, WebSocket, encoding, keyStore,
        storage: new MemoryStorage(), backoff: { base: 200, cap: 2000 },
      });
      clients.push(client);
      const received = [];
      const unreadable = [];
      client.on("push", (p) => received.push(p));
      client.on("undecryptable", (event) => unreadable.push(event));
      const kid = await client.enableEncryption();
      client.start();
      await waitForState(client, "connected");
      const payload = { title: "Your code is 493 117", body: "secret body", data: { otp: "493117" } };
      const sent = await encryptedPush(client.deviceId, payload);
      await waitFor(() => received.length === 1, { what: "the encrypted push" });
      const [p] = received;
      assert.equal(p.id, sent.message_id);
      assert.equal(p.title, payload.title);
      assert.equal(p.body, payload.body);
      assert.deepEqual(p.data, payload.data);
      assert.deepEqual(p.enc, sent.encrypted);
      assert.equal(p.enc.kid, kid);

      // Two rotations drop the key a queued push was encrypted to.
      await client.stop();
      const queued = await encryptedPush(client.deviceId, { title: "to the first key" });
      await client.enableEncryption({ rotate: true });
      await client.enableEncryption({ rotate: true });
      assert.equal((await keyStore.get(`kpns:${CLIENT_KEY}:e2ee`)).length, 2);
      client.start();
      await waitFor(() => unreadable.length === 1, { what: "the undecryptable report" });
      assert.equal(unreadable[0].push.id, queued.message_id);
      assert.equal(received.length, 1);
    });
  });
}
