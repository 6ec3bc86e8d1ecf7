// The SDK against a server before protocol 1.1 (a stand-in speaking the wire
// format): ack_upto is answered unknown_type, so the client acks each push
// with the v1 ack from then on. No KPNS server needed.
import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket, { WebSocketServer } from "ws";

import { JSON_CODEC, KpnsClient, MemoryStorage } from "../../../devices/static/kpns/kpns.js";
import { waitFor } from "../support/live.mjs";

const push = (seq) => JSON.stringify({
  type: "push", id: `m${seq}`, seq, title: `t${seq}`, body: "", url: "", image: "", data: {},
  priority: "normal", collapse_key: null, sent_at: 0, expires_at: 2 ** 40,
});

test("a server without ack_upto gets one ack per push", async () => {
  const received = [];
  let release;
  const more = new Promise((resolve) => { release = resolve; });
  const server = new WebSocketServer({ port: 0, host: "127.0.0.1", handleProtocols: () => "kpns.json.v1" });
  server.on("connection", (ws) => {
    ws.on("message", async (data) => {
      const frame = JSON.parse(String(data));
      received.push(frame);
      if (frame.type === "hello") {
        ws.send(JSON_CODEC.encode({ type: "welcome", device_id: "d1", last_seq: 0, heartbeat: 25, max_frame: 4096 }));
        for (const seq of [1, 2, 3]) ws.send(push(seq));
      } else if (frame.type === "ack_upto") { // what a 1.0 server answers
        ws.send(JSON.stringify({ type: "error", code: "unknown_type", message: "unknown frame type 'ack_upto'" }));
        await more;
        for (const seq of [4, 5]) ws.send(push(seq));
      }
    });
  });
  await new Promise((resolve) => server.on("listening", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  const storage = new MemoryStorage();
  storage.setItem("kpns:ck", JSON.stringify({ v: 1, server: url, clientKey: "ck", deviceId: "d1", token: "t", lastSeq: 0 }));
  const client = new KpnsClient({ server: url, clientKey: "ck", storage, WebSocket, fetch: () => { throw new Error("no HTTP"); } });
  const errors = [];
  client.on("error", (err) => errors.push(err));
  try {
    client.start();
    await waitFor(() => errors.length === 1, { what: "the unknown_type error" });
    release();
    await waitFor(() => client.lastSeq === 5, { what: "pushes 4 and 5" });
    await waitFor(() => received.length === 4, { what: "their acks" });
  } finally {
    await client.stop();
    server.close();
  }
  assert.deepEqual(received, [
    { type: "hello", last_seq: 0 },
    { type: "ack_upto", seq: 3 },
    { type: "ack", id: "m4", seq: 4 },
    { type: "ack", id: "m5", seq: 5 },
  ]);
  assert.equal(errors[0].code, "unknown_type");
});
