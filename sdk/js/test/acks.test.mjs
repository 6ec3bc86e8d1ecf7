// Cumulative, batched acks (protocol 1.1) against a real KPNS server (Daphne
// started by tests/sdk/test_js_sdk.py): a burst of 500 pushes is acked in a
// few ack_upto frames, the socket stays open, every delivery ends delivered.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import WebSocket from "ws";

import { KpnsClient, MemoryStorage, msgpackDecode } from "../../../devices/static/kpns/kpns.js";
import {
  CLIENT_KEY, LIVE_SKIP, SERVER, burst, deviceStatuses, sleep, startProxy, waitFor, waitForState,
} from "../support/live.mjs";

const BURST = 500;
const KMPP_TYPES = { 0x01: "hello", 0x02: "ack", 0x03: "opened", 0x04: "ping", 0x05: "ack_upto" };

/** A `ws` WebSocket that records every frame the SDK writes, decoded. */
function countingWebSocket(sent) {
  return class extends WebSocket {
    send(data, ...rest) {
      if (typeof data === "string") {
        sent.push(JSON.parse(data));
      } else {
        const bytes = new Uint8Array(data);
        const values = msgpackDecode(bytes.subarray(1));
        const type = KMPP_TYPES[bytes[0]];
        sent.push(type === "ack" ? { type, id: values[0], seq: values[1] } : { type, seq: values.at(-1) });
      }
      return super.send(data, ...rest);
    }
  };
}

const clients = [];
function makeClient(options = {}) {
  const sent = [];
  const errors = [];
  const client = new KpnsClient({
    server: SERVER,
    clientKey: CLIENT_KEY,
    WebSocket: countingWebSocket(sent),
    storage: new MemoryStorage(),
    device: { platform: "other", tags: ["js-acks"] },
    ...options,
  });
  client.on("error", (err) => {
    errors.push(err);
    console.log(`error event: ${err.message}`);
  });
  clients.push(client);
  const acks = () => sent.filter((frame) => frame.type === "ack" || frame.type === "ack_upto");
  return { client, sent, errors, acks };
}

after(async () => {
  await Promise.all(clients.map((client) => client.stop()));
});

/** Wait until the device's deliveries are in exactly these statuses. */
async function waitForStatuses(deviceId, expected, options = {}) {
  let now;
  const same = async () => {
    now = await deviceStatuses(deviceId);
    const sorted = (counts) => JSON.stringify(Object.entries(counts).sort());
    return sorted(now) === sorted(expected);
  };
  try {
    await waitFor(same, { what: JSON.stringify(expected), ...options });
  } catch (err) {
    err.message += `; statuses now ${JSON.stringify(now)}`;
    throw err;
  }
}

for (const encoding of ["json", "kmpp"]) {
  describe(`${encoding}: a burst of ${BURST} pushes`, { skip: LIVE_SKIP }, () => {
    test("is acked in a few ack_upto frames and the socket stays open", { timeout: 90000 }, async () => {
      const { client, errors, acks } = makeClient({ encoding });
      const seqs = [];
      const states = [];
      client.on("push", (p) => { seqs.push(p.seq); });
      client.on("state", (event) => states.push(event.state));
      client.start();
      await waitForState(client, "connected");
      await burst(client.deviceId, BURST);
      await waitFor(() => client.lastSeq === BURST, { timeout: 60000, what: `${BURST} pushes handled` });
      await waitForStatuses(client.deviceId, { delivered: BURST }, { timeout: 30000 });
      console.log(`${encoding}: ${acks().length} ack frames for ${BURST} pushes`);
      assert.equal(client.state, "connected");
      assert.deepEqual(states, ["registering", "connecting", "connected"]);
      assert.equal(client.stats.connects, 1);
      assert.deepEqual(errors, []);
      assert.deepEqual(seqs, Array.from({ length: BURST }, (_, i) => i + 1));
      const sent = acks();
      assert.ok(sent.every((frame) => frame.type === "ack_upto"), JSON.stringify(sent.slice(0, 3)));
      assert.ok(sent.length <= 40, `${sent.length} acks for ${BURST} pushes`);
      assert.equal(sent.at(-1).seq, BURST);
      assert.equal(client.stats.acks, sent.length);
    });
  });
}

describe("ack batching", { skip: LIVE_SKIP }, () => {
  test("waits for ackBatch pushes or ackDelayMs, and flushes on stop", async () => {
    const { client, errors, acks } = makeClient({ ackDelayMs: 60000, ackBatch: 4 });
    client.start();
    await waitForState(client, "connected");
    await burst(client.deviceId, 10);
    await waitFor(() => client.lastSeq === 10, { what: "10 pushes handled" });
    await waitForStatuses(client.deviceId, { delivered: 8, sent: 2 }, { what: "two full batches acked" });
    assert.deepEqual(acks().map((frame) => frame.seq), [4, 8]);
    await client.stop(); // the last two are acked before the close frame
    assert.deepEqual(acks().map((frame) => frame.seq), [4, 8, 10]);
    await waitForStatuses(client.deviceId, { delivered: 10 }, { what: "the flushed ack recorded" });
    assert.deepEqual(errors, []);

    const quick = makeClient({ ackDelayMs: 200 });
    quick.client.start();
    await waitForState(quick.client, "connected");
    await burst(quick.client.deviceId, 3);
    await waitFor(() => quick.client.lastSeq === 3, { what: "3 pushes handled" });
    assert.deepEqual(quick.acks(), []);
    await waitFor(() => quick.acks().length === 1, { what: "the delayed ack" });
    assert.deepEqual(quick.acks(), [{ type: "ack_upto", seq: 3 }]);
  });

  test("ackEach: true sends one v1 ack per push", { timeout: 90000 }, async () => {
    const { client, errors, acks } = makeClient({ ackEach: true, encoding: "kmpp" });
    client.start();
    await waitForState(client, "connected");
    const { message_ids: ids } = await burst(client.deviceId, 200);
    await waitForStatuses(client.deviceId, { delivered: 200 }, { timeout: 60000, what: "200 delivered" });
    assert.equal(client.state, "connected");
    assert.deepEqual(acks(), ids.map((id, i) => ({ type: "ack", id, seq: i + 1 })));
    assert.deepEqual(errors, []);
  });

  test("a push handled after its socket dropped is acked once, as the resent duplicate", async () => {
    // An ack on the next socket would name a seq that socket may never have
    // carried: the next hello's last_seq, or the resent push, covers it.
    const proxy = await startProxy(SERVER);
    try {
      const { client, errors, acks } = makeClient({ server: proxy.url, ackDelayMs: 0, backoff: { base: 200, cap: 1000 } });
      let calls = 0;
      client.on("push", async () => {
        calls += 1;
        if (calls === 1) {
          proxy.cut(); // the socket drops while the app handles the push
          proxy.restore();
          await sleep(1500); // still handling while the client reconnects
        }
      });
      client.start();
      await waitForState(client, "connected");
      await burst(client.deviceId, 1);
      await waitFor(() => client.stats.duplicates === 1, { timeout: 15000, what: "the resent push" });
      await waitForStatuses(client.deviceId, { delivered: 1 }, { what: "delivered" });
      assert.equal(calls, 1);
      assert.equal(client.stats.connects, 2);
      assert.deepEqual(acks(), [{ type: "ack_upto", seq: 1 }]);
      assert.deepEqual(errors.filter((err) => err.code === "unknown_message"), []);
    } finally {
      await proxy.close();
    }
  });
});
