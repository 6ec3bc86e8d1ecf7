// The SDK's codecs against the reference codec's vectors (tests/sdk/vectors.py),
// written to $KPNS_VECTORS by tests/sdk/test_js_sdk.py, plus round trips.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import {
  JSON_CODEC,
  KMPP_CODEC,
  msgpackDecode,
  msgpackEncode,
  ProtocolError,
} from "../../../devices/static/kpns/kpns.js";

const vectorsPath = process.env.KPNS_VECTORS;
const vectors = vectorsPath ? JSON.parse(readFileSync(vectorsPath, "utf8")) : null;
const skip = vectors ? false : "KPNS_VECTORS is not set (run through pytest tests/sdk)";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const bytes = (text) => new Uint8Array(Buffer.from(text, "hex"));
const FIELDS = {
  welcome: ["device_id", "last_seq", "heartbeat", "max_frame"],
  push: ["id", "seq", "title", "body", "url", "image", "data", "priority", "collapse_key", "sent_at", "expires_at", "enc"],
  pong: ["t"],
  error: ["code", "message", "ref"],
  resync: ["reason", "last_seq"],
  recall: ["id", "seq"], // protocol 1.3
  update: ["id", "seq", "title", "body", "url", "image", "data"],
};

describe("reference vectors", { skip }, () => {
  test("the vectors hold every client frame type", () => {
    const types = new Set(vectors.client.map((v) => v.frame.type));
    assert.deepEqual([...types].sort(), ["ack", "ack_upto", "hello", "opened", "ping"]);
  });

  test("client frames encode to the reference KMPP bytes", () => {
    for (const v of vectors.client) {
      assert.equal(hex(KMPP_CODEC.encode(v.frame)), v.kmpp, JSON.stringify(v.frame));
    }
  });

  test("client frames encode to equivalent JSON", () => {
    for (const v of vectors.client) {
      assert.deepEqual(JSON.parse(JSON_CODEC.encode(v.frame)), JSON.parse(v.json));
    }
  });

  test("server frames decode from KMPP and JSON to the reference values", () => {
    for (const v of vectors.server) {
      assert.deepEqual(KMPP_CODEC.decode(bytes(v.kmpp)), v.frame, v.kmpp.slice(0, 40));
      assert.deepEqual(JSON_CODEC.decode(v.json), v.frame);
    }
  });

  test("the SDK's msgpack encoder writes server frames byte for byte", () => {
    // Values whose JavaScript type is unambiguous (no integral floats): the
    // generic encoder must choose the same smallest forms as msgpack-python.
    for (const v of vectors.server) {
      const values = FIELDS[v.frame.type].map((name) => v.frame[name]);
      // A trailing null enc (protocol 1.2) is left out of the array.
      if (v.frame.type === "push" && v.frame.enc === null) values.pop();
      assert.equal(hex(msgpackEncode(values)), v.kmpp.slice(2), v.frame.type);
    }
  });
});

describe("msgpack", () => {
  test("round-trips every integer width", () => {
    for (const n of [0, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
      -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -Number.MAX_SAFE_INTEGER]) {
      assert.equal(msgpackDecode(msgpackEncode(n)), n);
    }
  });

  test("known encodings from docs/protocol.md", () => {
    assert.equal(hex(KMPP_CODEC.encode({ type: "hello", last_seq: 7 })), "019107");
    assert.equal(hex(KMPP_CODEC.encode({ type: "ack", id: "m1", seq: 8 })), "0292a26d3108");
    assert.equal(hex(KMPP_CODEC.encode({ type: "ping" })), "0491c0");
    assert.equal(hex(KMPP_CODEC.encode({ type: "ack_upto", seq: 5 })), "059105");
    assert.equal(JSON_CODEC.encode({ type: "ack_upto", seq: 5 }), '{"type":"ack_upto","seq":5}');
  });

  test("refuses what KMPP does not allow", () => {
    assert.throws(() => msgpackDecode(bytes("c1")), /unsupported/); // never used
    assert.throws(() => msgpackDecode(bytes("d40100")), /unsupported/); // ext
    assert.throws(() => msgpackDecode(bytes("0100")), /trailing/);
    assert.throws(() => msgpackDecode(bytes("dc0010")), /truncated/);
    assert.throws(() => msgpackDecode(bytes("81c0c0")), /keys must be strings/);
    assert.throws(() => msgpackDecode(bytes("cf0020000000000000")), /safe range/);
    assert.throws(() => msgpackEncode(NaN), /NaN/);
    let deep = 1;
    for (let i = 0; i < 100; i++) deep = [deep];
    assert.throws(() => msgpackEncode(deep), /deep/);
  });

  test("a __proto__ key stays data", () => {
    const decoded = msgpackDecode(msgpackEncode(JSON.parse('{"__proto__": {"x": 1}}')));
    assert.deepEqual(Object.keys(decoded), ["__proto__"]);
    assert.equal({}.x, undefined);
  });
});

describe("frame checks", () => {
  test("bad frames raise protocol errors with the protocol's codes", () => {
    const cases = [
      [() => JSON_CODEC.decode("{"), "bad_frame"],
      [() => JSON_CODEC.decode('{"type":"hello","last_seq":1}'), "unknown_type"],
      [() => JSON_CODEC.decode('{"type":"push","id":"x"}'), "invalid_field"],
      [() => JSON_CODEC.decode(new Uint8Array([0x13, 0x91, 0xc0])), "bad_frame"],
      [() => KMPP_CODEC.decode("text"), "bad_frame"],
      [() => KMPP_CODEC.decode(new Uint8Array([0x99])), "unknown_type"],
      [() => KMPP_CODEC.decode(new Uint8Array([0x13, 0x92, 0xc0, 0xc0])), "invalid_field"],
      [() => KMPP_CODEC.decode(new Uint8Array([0x13, 0xc1])), "bad_frame"],
    ];
    for (const [run, code] of cases) {
      assert.throws(run, (err) => err instanceof ProtocolError && err.code === code);
    }
  });
});
