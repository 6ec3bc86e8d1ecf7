// The SDK against a real KPNS server (Daphne started by tests/sdk/test_js_sdk.py).
import assert from "node:assert/strict";
import net from "node:net";
import { after, describe, test } from "node:test";
import WebSocket from "ws";

import { HttpError, KpnsClient, MemoryStorage } from "../../../devices/static/kpns/kpns.js";
import {
  CLIENT_KEY, LIVE_SKIP, SERVER, deliveries, events, push, recall, revoke, sleep, startProxy, waitFor, waitForState,
} from "../support/live.mjs";

const clients = [];
function makeClient(options = {}) {
  const client = new KpnsClient({
    server: SERVER,
    clientKey: CLIENT_KEY,
    WebSocket,
    storage: new MemoryStorage(),
    device: { platform: "other", tags: ["js-sdk"] },
    backoff: { base: 200, cap: 2000 },
    ...options,
  });
  clients.push(client);
  return client;
}

after(async () => {
  await Promise.all(clients.map((client) => client.stop()));
});

const status = async (messageId, deviceId) => (await deliveries(messageId))[deviceId]?.status;

for (const encoding of ["json", "kmpp"]) {
  describe(`${encoding}: register, receive, ack, open`, { skip: LIVE_SKIP }, () => {
    test("registers once, stores the device and receives pushes in the callback", async () => {
      const storage = new MemoryStorage();
      const client = makeClient({ encoding, storage });
      const received = [];
      let handled = false;
      client.on("push", async (p) => {
        received.push(p);
        await sleep(300); // the ack waits for the handler's promise
        handled = true;
      });
      const states = [];
      client.on("state", (event) => states.push(event.text));
      client.start();
      await waitForState(client, "connected");
      const stored = JSON.parse(storage.getItem(`kpns:${CLIENT_KEY}`));
      assert.match(stored.deviceId, /^[0-9a-f-]{36}$/);
      assert.ok(stored.token.length > 20);
      assert.equal(client.deviceId, stored.deviceId);
      assert.deepEqual(states.slice(0, 3), ["registering", "connecting", "connected"]);

      const data = { coupon: "VIP20", nested: { list: [1, 2.5, "x", null, true] }, big: 2 ** 40 };
      const sent = await push([client.deviceId], {
        title: "Spring sale", body: "20% off", url: "https://shop.example/sale", data,
      });
      await waitFor(() => received.length === 1, { what: "the push" });
      const [p] = received;
      assert.equal(p.id, sent.message_id);
      assert.equal(p.title, "Spring sale");
      assert.equal(p.body, "20% off");
      assert.deepEqual(p.data, data);
      assert.equal(p.seq, 1);
      // Not acked while the handler runs.
      assert.ok(["pending", "sent"].includes(await status(sent.message_id, client.deviceId)));
      await waitFor(async () => handled && (await status(sent.message_id, client.deviceId)) === "delivered", {
        what: "the ack",
      });
      assert.equal(client.lastSeq, 1);
      assert.equal(JSON.parse(storage.getItem(`kpns:${CLIENT_KEY}`)).lastSeq, 1);

      client.opened(p);
      await waitFor(async () => (await status(sent.message_id, client.deviceId)) === "opened", {
        what: "the open",
      });
    });

    test("a new client on the same storage reuses the device and resumes after last_seq", async () => {
      const storage = new MemoryStorage();
      const first = makeClient({ encoding, storage });
      const seen = [];
      first.on("push", (p) => seen.push(p.id));
      first.start();
      await waitForState(first, "connected");
      const one = await push([first.deviceId], { title: "one" });
      await waitFor(() => first.lastSeq === 1, { what: "first push handled" });
      await waitFor(async () => (await status(one.message_id, first.deviceId)) === "delivered");
      await first.stop();
      assert.equal(first.state, "stopped");

      const two = await push([first.deviceId], { title: "two while stopped" });
      const second = makeClient({ encoding, storage });
      const seenAgain = [];
      second.on("push", (p) => seenAgain.push(p.id));
      second.start();
      await waitForState(second, "connected");
      assert.equal(second.deviceId, first.deviceId);
      await waitFor(() => seenAgain.length === 1, { what: "the missed push" });
      await sleep(300);
      assert.deepEqual(seenAgain, [two.message_id]);
      assert.deepEqual(seen, [one.message_id]);
    });
  });
}

describe("reconnects", { skip: LIVE_SKIP }, () => {
  test("after a network drop, receives what it missed exactly once", async () => {
    const proxy = await startProxy(SERVER);
    try {
      const client = makeClient({ server: proxy.url, encoding: "kmpp" });
      const ids = [];
      const states = [];
      client.on("push", (p) => ids.push(p.id));
      client.on("state", (event) => states.push(event));
      client.start();
      await waitForState(client, "connected");
      const first = await push([client.deviceId], { title: "before" });
      await waitFor(() => ids.length === 1, { what: "first push" });

      proxy.cut();
      await waitFor(() => client.state === "reconnecting", { what: "reconnecting" });
      const during = [];
      for (let i = 0; i < 3; i++) during.push((await push([client.deviceId], { title: `during ${i}` })).message_id);
      await sleep(500);
      proxy.restore();
      await waitFor(() => ids.length === 4, { timeout: 15000, what: "the missed pushes" });
      await sleep(500);
      assert.deepEqual(ids, [first.message_id, ...during]);
      assert.equal(client.state, "connected");
      const reconnecting = states.find((event) => event.state === "reconnecting");
      assert.match(reconnecting.text, /^reconnecting in \d+\.\d s \(.+\)$/);
      assert.ok(reconnecting.delay <= 2000, "full jitter below the cap");
    } finally {
      await proxy.close();
    }
  });

  test("drops a push the server sends again after a reconnect", async () => {
    const proxy = await startProxy(SERVER);
    try {
      const client = makeClient({ server: proxy.url });
      const calls = [];
      client.on("push", async (p) => {
        calls.push(p.id);
        if (calls.length === 1) {
          proxy.cut(); // the ack cannot reach the server
          proxy.restore();
          await sleep(1500); // still handling while the client reconnects
        }
      });
      client.start();
      await waitForState(client, "connected");
      const sent = await push([client.deviceId], { title: "once" });
      await waitFor(() => client.stats.duplicates >= 1, { timeout: 15000, what: "the resent push" });
      await waitFor(async () => (await status(sent.message_id, client.deviceId)) === "delivered");
      assert.deepEqual(calls, [sent.message_id]);
    } finally {
      await proxy.close();
    }
  });

  test("backs off while the server is unreachable, then registers and connects", async () => {
    const proxy = await startProxy(SERVER);
    proxy.cut();
    try {
      const client = makeClient({ server: proxy.url });
      const reasons = [];
      client.on("state", (event) => reasons.push(event.reason));
      client.start();
      await waitFor(() => reasons.includes("server unreachable"), { what: "unreachable" });
      proxy.restore();
      await waitForState(client, "connected", 10000);
    } finally {
      await proxy.close();
    }
  });
});

describe("heartbeats and lifecycle", { skip: LIVE_SKIP }, () => {
  test("pings every welcome.heartbeat seconds", async () => {
    const client = makeClient();
    let heartbeat = null;
    client.on("welcome", (w) => { heartbeat = w.heartbeat; });
    client.start();
    await waitForState(client, "connected");
    assert.ok(heartbeat >= 1 && heartbeat <= 3, `test server heartbeat is short (${heartbeat})`);
    await waitFor(() => client.stats.pongs >= 2, { timeout: heartbeat * 3000 + 2000, what: "two pongs" });
    assert.ok(client.stats.pings >= 2);
  });

  test("a second connection of the same device replaces the first, which stops", async () => {
    const storage = new MemoryStorage();
    const first = makeClient({ storage });
    first.start();
    await waitForState(first, "connected");
    const second = makeClient({ storage });
    const texts = [];
    first.on("state", (event) => texts.push(event.text));
    second.start();
    await waitForState(second, "connected");
    await waitForState(first, "replaced");
    await sleep(1000);
    assert.equal(first.state, "replaced");
    assert.equal(second.state, "connected");
    assert.deepEqual(texts, ["replaced: this device connected elsewhere"]);
  });

  test("a revoked device stops with 'token revoked', also when it connects again", async () => {
    const storage = new MemoryStorage();
    const client = makeClient({ storage });
    client.start();
    await waitForState(client, "connected");
    await revoke(client.deviceId);
    await waitForState(client, "revoked");
    const again = makeClient({ storage });
    const texts = [];
    again.on("state", (event) => texts.push(event.text));
    again.start();
    await waitForState(again, "revoked");
    assert.equal(texts.at(-1), "token revoked: register again");
  });

  test("reregister: true registers a new device after a revocation", async () => {
    const client = makeClient({ reregister: true });
    client.start();
    await waitForState(client, "connected");
    const old = client.deviceId;
    await revoke(old);
    await waitFor(() => client.state === "connected" && client.deviceId !== old, { what: "a new device" });
  });

  test("an unknown client key fails without retrying", async () => {
    const client = makeClient({ clientKey: "ck_unknown" });
    const errors = [];
    client.on("error", (err) => errors.push(err));
    client.start();
    await waitForState(client, "failed");
    assert.match(errors[0].message, /HTTP 400/);
  });

  test("tags given in `device` are applied to a stored device", async () => {
    const storage = new MemoryStorage();
    const first = makeClient({ storage, device: { platform: "other", tags: ["a"] } });
    first.start();
    await waitForState(first, "connected");
    await first.stop();
    const second = makeClient({ storage, device: { platform: "other", tags: ["b", "c"] } });
    second.start();
    await waitForState(second, "connected");
    const profile = await second.update({});
    assert.deepEqual(profile.tags, ["b", "c"]);
  });
});

describe("recall and update (protocol 1.3)", { skip: LIVE_SKIP }, () => {
  test("update then recall reach the listeners in seq order and are acked", async () => {
    const shown = new Map();
    const seen = [];
    const client = makeClient({
      onPush: (p) => { seen.push(p.type); shown.set(p.id, p.title); },
      onUpdate: (u) => { seen.push(u.type); shown.set(u.id, u.title); },
      onRecall: async (r) => { seen.push(r.type); shown.delete(r.id); },
    });
    client.start();
    await waitForState(client, "connected");
    const { message_id: id } = await push([client.deviceId], { title: "Sale 10%" });
    await waitFor(() => shown.has(id), { what: "the push" });
    await waitFor(async () => (await status(id, client.deviceId)) === "delivered", { what: "its ack" });
    const update = await recall(id, { title: "Sale 20%" });
    await waitFor(() => shown.get(id) === "Sale 20%", { what: "the update" });
    const withdrawn = await recall(id);
    await waitFor(() => !shown.has(id), { what: "the recall" });
    assert.deepEqual(seen, ["push", "update", "recall"]);
    assert.equal(client.lastSeq, 3);
    assert.equal(client.stats.controls, 2);
    for (const control of [update.control_id, withdrawn.control_id]) {
      await waitFor(async () => (await status(control, client.deviceId)) === "delivered", { what: "the control's ack" });
    }
  });
});

describe("app events (canary rollouts)", { skip: LIVE_SKIP }, () => {
  test("reportEvent records an event about a received push once per device, message and name", async () => {
    const received = [];
    const client = makeClient({ onPush: (p) => { received.push(p); } });
    client.start();
    await waitForState(client, "connected");
    const { message_id: id } = await push([client.deviceId], { title: "New release" });
    await waitFor(() => received.length === 1, { what: "the push" });
    assert.equal(received[0].id, id);

    assert.equal(await client.reportEvent(id, "crash"), true);
    assert.equal(await client.reportEvent(id, "crash"), false); // counted once
    assert.equal(await client.reportEvent(id, "uninstall"), true);
    assert.deepEqual(await events(id), { [client.deviceId]: ["crash", "uninstall"] });

    const badName = await client.reportEvent(id, "Crash!").catch((err) => err);
    assert.ok(badName instanceof HttpError, String(badName));
    assert.equal(badName.status, 400);
    assert.ok("name" in badName.body.errors, JSON.stringify(badName.body));
    assert.match(badName.message, /^HTTP 400/);

    const unknown = await client.reportEvent(crypto.randomUUID(), "crash").catch((err) => err);
    assert.ok(unknown instanceof HttpError, String(unknown));
    assert.equal(unknown.status, 404);
    assert.equal(unknown.message, "HTTP 404: No such push for this device.");

    assert.deepEqual(await events(id), { [client.deviceId]: ["crash", "uninstall"] });
  });

  test("reportEvent gives up after httpTimeout when the server does not answer", async () => {
    const held = new Set();
    const silent = net.createServer((socket) => { held.add(socket); });
    await new Promise((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const server = `http://127.0.0.1:${silent.address().port}`;
    const storage = new MemoryStorage();
    await storage.setItem("kpns:ck_test", JSON.stringify({
      v: 1, server, clientKey: "ck_test", deviceId: "d", token: "t", lastSeq: 0,
    }));
    const client = new KpnsClient({ server, clientKey: "ck_test", WebSocket, storage, httpTimeout: 200 });
    try {
      const err = await client.reportEvent(crypto.randomUUID(), "crash").catch((e) => e);
      assert.equal(err.name, "TimeoutError", String(err));
      assert.match(err.message, /^POST \/api\/v1\/device\/events: no answer within 200 ms$/);
      assert.ok(held.size > 0, "the request reached the silent server");
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
