// KPNS JavaScript SDK: register a device, hold its socket, receive pushes.
//
// An ES module for browsers (served by KPNS at /static/kpns/kpns.js) and for
// Node 20+ (pass a WebSocket implementation, e.g. the `ws` package).
// Guide: docs/clients.md. Wire format: docs/protocol.md; the reference codec
// is devices/protocol.py, and the KMPP bytes here match it exactly.

export const SUBPROTOCOL_JSON = "kpns.json.v1";
export const SUBPROTOCOL_KMPP = "kmpp.v1";
export const TOKEN_SUBPROTOCOL_PREFIX = "kpns.token.";
export const VERSION = "1.2.0";

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_DEPTH = 64; // frames nest data at most 32 deep (docs/protocol.md)

// ---------------------------------------------------------------------------
// MessagePack: the subset KMPP uses (nil, bool, int, float64, str, bin,
// array, map with string keys). Encodes in the smallest form, as msgpack-
// python's packb(use_bin_type=True) does, so both sides produce equal bytes.

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });

class ByteWriter {
  constructor() {
    this.bytes = new Uint8Array(128);
    this.length = 0;
  }
  reserve(n) {
    if (this.length + n <= this.bytes.length) return;
    let size = this.bytes.length * 2;
    while (size < this.length + n) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
  byte(b) {
    this.reserve(1);
    this.bytes[this.length++] = b;
  }
  uint(value, width) {
    // Big-endian unsigned integer of `width` bytes (1, 2 or 4).
    this.reserve(width);
    for (let shift = (width - 1) * 8; shift >= 0; shift -= 8) {
      this.bytes[this.length++] = Math.floor(value / 2 ** shift) & 0xff;
    }
  }
  big(value) {
    const bits = BigInt.asUintN(64, BigInt(value));
    this.reserve(8);
    for (let shift = 56n; shift >= 0n; shift -= 8n) {
      this.bytes[this.length++] = Number((bits >> shift) & 0xffn);
    }
  }
  raw(array) {
    this.reserve(array.length);
    this.bytes.set(array, this.length);
    this.length += array.length;
  }
  result() {
    return this.bytes.slice(0, this.length);
  }
}

function packInt(w, n) {
  if (n >= 0) {
    if (n < 0x80) w.byte(n);
    else if (n < 0x100) { w.byte(0xcc); w.uint(n, 1); }
    else if (n < 0x10000) { w.byte(0xcd); w.uint(n, 2); }
    else if (n < 0x100000000) { w.byte(0xce); w.uint(n, 4); }
    else { w.byte(0xcf); w.big(n); }
  } else if (n >= -32) {
    w.byte(n & 0xff);
  } else if (n >= -128) {
    w.byte(0xd0); w.uint(n & 0xff, 1);
  } else if (n >= -32768) {
    w.byte(0xd1); w.uint(n & 0xffff, 2);
  } else if (n >= -2147483648) {
    w.byte(0xd2); w.uint(n >>> 0, 4);
  } else {
    w.byte(0xd3); w.big(n);
  }
}

function packLength(w, n, fix, fixLimit, codes) {
  // codes: the 8- (or null), 16- and 32-bit length headers.
  if (n < fixLimit) w.byte(fix | n);
  else if (codes[0] !== null && n < 0x100) { w.byte(codes[0]); w.uint(n, 1); }
  else if (n < 0x10000) { w.byte(codes[1]); w.uint(n, 2); }
  else { w.byte(codes[2]); w.uint(n, 4); }
}

function packValue(w, value, depth) {
  if (depth > MAX_DEPTH) throw new Error("msgpack: nested too deep");
  if (value === null || value === undefined) {
    w.byte(0xc0);
  } else if (value === false) {
    w.byte(0xc2);
  } else if (value === true) {
    w.byte(0xc3);
  } else if (typeof value === "number") {
    if (Number.isSafeInteger(value)) {
      packInt(w, value);
    } else if (Number.isFinite(value)) {
      w.byte(0xcb);
      const view = new DataView(new ArrayBuffer(8));
      view.setFloat64(0, value);
      w.raw(new Uint8Array(view.buffer));
    } else {
      throw new Error("msgpack: NaN and Infinity are not allowed");
    }
  } else if (typeof value === "bigint") {
    if (value > BigInt(MAX_SAFE) || value < -BigInt(MAX_SAFE)) {
      throw new Error("msgpack: integer outside the safe range");
    }
    packInt(w, Number(value));
  } else if (typeof value === "string") {
    const bytes = utf8Encoder.encode(value);
    packLength(w, bytes.length, 0xa0, 32, [0xd9, 0xda, 0xdb]);
    w.raw(bytes);
  } else if (value instanceof Uint8Array) {
    packLength(w, value.length, 0, 0, [0xc4, 0xc5, 0xc6]);
    w.raw(value);
  } else if (Array.isArray(value)) {
    packLength(w, value.length, 0x90, 16, [null, 0xdc, 0xdd]);
    for (const item of value) packValue(w, item, depth + 1);
  } else if (typeof value === "object") {
    const keys = Object.keys(value);
    packLength(w, keys.length, 0x80, 16, [null, 0xde, 0xdf]);
    for (const key of keys) {
      packValue(w, key, depth + 1);
      packValue(w, value[key], depth + 1);
    }
  } else {
    throw new Error(`msgpack: cannot encode ${typeof value}`);
  }
}

/** Encode one value as MessagePack bytes (Uint8Array). */
export function msgpackEncode(value) {
  const w = new ByteWriter();
  packValue(w, value, 0);
  return w.result();
}

class ByteReader {
  constructor(bytes) {
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.bytes.length) throw new Error("msgpack: truncated");
  }
  u8() { this.need(1); return this.bytes[this.pos++]; }
  u16() { this.need(2); const v = this.view.getUint16(this.pos); this.pos += 2; return v; }
  u32() { this.need(4); const v = this.view.getUint32(this.pos); this.pos += 4; return v; }
  take(n) {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  int64(signed) {
    this.need(8);
    const v = signed ? this.view.getBigInt64(this.pos) : this.view.getBigUint64(this.pos);
    this.pos += 8;
    if (v > BigInt(MAX_SAFE) || v < -BigInt(MAX_SAFE)) {
      throw new Error("msgpack: integer outside the safe range");
    }
    return Number(v);
  }
}

function unpackValue(r, depth) {
  if (depth > MAX_DEPTH) throw new Error("msgpack: nested too deep");
  const b = r.u8();
  if (b <= 0x7f) return b;
  if (b >= 0xe0) return b - 0x100;
  if ((b & 0xe0) === 0xa0) return unpackStr(r, b & 0x1f);
  if ((b & 0xf0) === 0x90) return unpackArray(r, b & 0x0f, depth);
  if ((b & 0xf0) === 0x80) return unpackMap(r, b & 0x0f, depth);
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return r.take(r.u8()).slice();
    case 0xc5: return r.take(r.u16()).slice();
    case 0xc6: return r.take(r.u32()).slice();
    case 0xca: { r.need(4); const v = r.view.getFloat32(r.pos); r.pos += 4; return v; }
    case 0xcb: { r.need(8); const v = r.view.getFloat64(r.pos); r.pos += 8; return v; }
    case 0xcc: return r.u8();
    case 0xcd: return r.u16();
    case 0xce: return r.u32();
    case 0xcf: return r.int64(false);
    case 0xd0: { r.need(1); const v = r.view.getInt8(r.pos); r.pos += 1; return v; }
    case 0xd1: { r.need(2); const v = r.view.getInt16(r.pos); r.pos += 2; return v; }
    case 0xd2: { r.need(4); const v = r.view.getInt32(r.pos); r.pos += 4; return v; }
    case 0xd3: return r.int64(true);
    case 0xd9: return unpackStr(r, r.u8());
    case 0xda: return unpackStr(r, r.u16());
    case 0xdb: return unpackStr(r, r.u32());
    case 0xdc: return unpackArray(r, r.u16(), depth);
    case 0xdd: return unpackArray(r, r.u32(), depth);
    case 0xde: return unpackMap(r, r.u16(), depth);
    case 0xdf: return unpackMap(r, r.u32(), depth);
    default:
      throw new Error(`msgpack: unsupported type 0x${b.toString(16)}`);
  }
}

function unpackStr(r, n) {
  return utf8Decoder.decode(r.take(n));
}

function unpackArray(r, n, depth) {
  r.need(n); // every item takes at least one byte: refuse absurd lengths early
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = unpackValue(r, depth + 1);
  return out;
}

function unpackMap(r, n, depth) {
  r.need(n * 2);
  const out = {};
  for (let i = 0; i < n; i++) {
    const key = unpackValue(r, depth + 1);
    if (typeof key !== "string") throw new Error("msgpack: map keys must be strings");
    const value = unpackValue(r, depth + 1);
    Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

/** Decode exactly one MessagePack value (no trailing bytes). */
export function msgpackDecode(bytes) {
  const r = new ByteReader(toBytes(bytes));
  const value = unpackValue(r, 0);
  if (r.pos !== r.bytes.length) throw new Error("msgpack: trailing bytes");
  return value;
}

function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return Uint8Array.from(data); // ws: fragmented messages
  throw new TypeError("expected bytes");
}

// ---------------------------------------------------------------------------
// Frames and codecs (docs/protocol.md, section 3). Field order is KMPP order.

const FRAMES = {
  hello: [0x01, ["last_seq"]],
  ack: [0x02, ["id", "seq"]],
  ack_upto: [0x05, ["seq"]], // protocol 1.1: every push up to seq was handled
  opened: [0x03, ["id", "seq"]],
  ping: [0x04, ["t"]],
  welcome: [0x11, ["device_id", "last_seq", "heartbeat", "max_frame"]],
  push: [0x12, ["id", "seq", "title", "body", "url", "image", "data", "priority",
                "collapse_key", "sent_at", "expires_at", "enc"]], // enc: 1.2, trailing
  pong: [0x13, ["t"]],
  error: [0x14, ["code", "message", "ref"]],
  resync: [0x15, ["reason", "last_seq"]],
  // protocol 1.3: a sent push withdrawn (recall) or rewritten (update); id is
  // that push's, seq the frame's own place in the device's inbox.
  recall: [0x16, ["id", "seq"]],
  update: [0x17, ["id", "seq", "title", "body", "url", "image", "data"]],
};
const BY_CODE = new Map(Object.entries(FRAMES).map(([type, [code, fields]]) => [code, [type, fields]]));
const SERVER_TYPES = new Set(["welcome", "push", "pong", "error", "resync", "recall", "update"]);
const OPTIONAL = new Set(["t", "ref", "collapse_key", "enc"]); // may be null or absent in JSON
// Added after 1.0 at a frame's end: a KMPP array may leave it out (docs/protocol.md).
const TRAILING_OPTIONAL = new Set(["enc"]);
const ENC_KEYS = ["ct", "epk", "iv", "kid"];
const isBase64Url = (v) => typeof v === "string" && /^[A-Za-z0-9_-]+$/.test(v);

const isInt = (v, min) => Number.isSafeInteger(v) && v >= min;
const isText = (v) => typeof v === "string";
const CHECKS = {
  id: (v) => isText(v) && v.length > 0 && v.length <= 64,
  device_id: (v) => isText(v) && v.length > 0,
  seq: (v) => isInt(v, 1),
  last_seq: (v) => isInt(v, 0),
  heartbeat: (v) => isInt(v, 0),
  max_frame: (v) => isInt(v, 0),
  sent_at: (v) => isInt(v, 0),
  expires_at: (v) => isInt(v, 0),
  t: (v) => v === null || Number.isSafeInteger(v),
  data: (v) => v !== null && typeof v === "object" && !Array.isArray(v),
  priority: (v) => v === "normal" || v === "high",
  collapse_key: (v) => v === null || isText(v),
  ref: (v) => v === null || isText(v),
  enc: (v) => v === null || (v !== null && typeof v === "object" && !Array.isArray(v)
    && Object.keys(v).sort().join() === ENC_KEYS.join() && ENC_KEYS.every((k) => isBase64Url(v[k]))),
};

/** A frame was not valid: `code` is the protocol's error code. */
export class ProtocolError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "ProtocolError";
    this.code = code;
  }
}

function checkFields(type, fields, values) {
  const frame = { type };
  fields.forEach((name, i) => {
    const value = values[i];
    const check = CHECKS[name] || isText;
    if (!check(value)) throw new ProtocolError("invalid_field", `field '${name}' of ${type} is invalid`);
    frame[name] = value;
  });
  return frame;
}

class Codec {
  constructor(name, binary) {
    this.name = name; // the WebSocket subprotocol
    this.binary = binary;
  }
}

class JsonCodec extends Codec {
  encode(frame) {
    const [, fields] = FRAMES[frame.type];
    const out = { type: frame.type };
    for (const name of fields) {
      const value = frame[name] === undefined ? null : frame[name];
      if (!(value === null && OPTIONAL.has(name))) out[name] = value;
    }
    return JSON.stringify(out);
  }
  decode(data) {
    if (typeof data !== "string") throw new ProtocolError("bad_frame", `${this.name} expects text frames`);
    let obj;
    try {
      obj = JSON.parse(data);
    } catch {
      throw new ProtocolError("bad_frame", "not valid JSON");
    }
    if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
      throw new ProtocolError("bad_frame", "a frame must be a JSON object");
    }
    if (!SERVER_TYPES.has(obj.type)) throw new ProtocolError("unknown_type", `unknown frame type ${String(obj.type).slice(0, 32)}`);
    const [, fields] = FRAMES[obj.type];
    const values = fields.map((name) => {
      if (name in obj) return obj[name];
      if (OPTIONAL.has(name)) return null;
      throw new ProtocolError("invalid_field", `missing field '${name}'`);
    });
    return checkFields(obj.type, fields, values);
  }
}

class KmppCodec extends Codec {
  encode(frame) {
    const [code, fields] = FRAMES[frame.type];
    const body = msgpackEncode(fields.map((name) => (frame[name] === undefined ? null : frame[name])));
    const out = new Uint8Array(body.length + 1);
    out[0] = code;
    out.set(body, 1);
    return out;
  }
  decode(data) {
    if (typeof data === "string") throw new ProtocolError("bad_frame", `${this.name} expects binary frames`);
    const bytes = toBytes(data);
    if (bytes.length === 0) throw new ProtocolError("bad_frame", "empty frame");
    const entry = BY_CODE.get(bytes[0]);
    if (!entry || !SERVER_TYPES.has(entry[0])) {
      throw new ProtocolError("unknown_type", `unknown frame type 0x${bytes[0].toString(16)}`);
    }
    const [type, fields] = entry;
    let values;
    try {
      values = msgpackDecode(bytes.subarray(1));
    } catch (err) {
      throw new ProtocolError("bad_frame", `not valid msgpack (${err.message})`);
    }
    if (Array.isArray(values) && values.length === fields.length - 1 && TRAILING_OPTIONAL.has(fields.at(-1))) {
      values.push(null); // a 1.2 field the frame does not use
    }
    if (!Array.isArray(values) || values.length !== fields.length) {
      throw new ProtocolError("invalid_field", `${type} expects ${fields.length} fields`);
    }
    return checkFields(type, fields, values);
  }
}

export const JSON_CODEC = new JsonCodec(SUBPROTOCOL_JSON, false);
export const KMPP_CODEC = new KmppCodec(SUBPROTOCOL_KMPP, true);

/** The codec for an encoding name: "json" / "kpns.json.v1" or "kmpp" / "kmpp.v1". */
export function codecFor(encoding) {
  if (encoding === "kmpp" || encoding === SUBPROTOCOL_KMPP) return KMPP_CODEC;
  if (encoding === undefined || encoding === "json" || encoding === SUBPROTOCOL_JSON) return JSON_CODEC;
  throw new Error(`unknown encoding ${encoding}`);
}

// ---------------------------------------------------------------------------
// Storage: anything with getItem / setItem / removeItem (sync or async), like
// localStorage. Values are strings.

export class MemoryStorage {
  constructor() {
    this.items = new Map();
  }
  getItem(key) {
    return this.items.has(key) ? this.items.get(key) : null;
  }
  setItem(key, value) {
    this.items.set(key, String(value));
  }
  removeItem(key) {
    this.items.delete(key);
  }
}

function defaultStorage() {
  try {
    const storage = globalThis.localStorage;
    if (storage) {
      storage.getItem("kpns:probe");
      return storage;
    }
  } catch {
    // localStorage exists but is blocked (private mode, sandboxed frame).
  }
  return new MemoryStorage();
}

// ---------------------------------------------------------------------------
// End-to-end encrypted pushes, KPNS-E2EE-1 (docs/e2ee.md): ECDH P-256,
// HKDF-SHA256, AES-128-GCM, all WebCrypto. The private key is a
// non-extractable CryptoKey: page script (this SDK included) can use it to
// derive, never read its bytes. It lives in IndexedDB, which stores CryptoKey
// objects as they are; localStorage holds strings only.

const E2EE_INFO = utf8Encoder.encode("KPNS-E2EE-1");
const P256 = { name: "ECDH", namedCurve: "P-256" };

function b64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A device key: { kid, publicKey (base64url point), privateKey (CryptoKey) }. */
export async function e2eeKeyFrom(privateKey, publicPoint) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", publicPoint));
  return { kid: b64url(digest.subarray(0, 16)), publicKey: b64url(publicPoint), privateKey };
}

/** A new key pair whose private half cannot be exported. */
export async function e2eeGenerateKey() {
  const pair = await crypto.subtle.generateKey(P256, false, ["deriveBits"]);
  const point = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  return e2eeKeyFrom(pair.privateKey, point);
}

/** The content object of a push's `enc`, with the device key it names. */
export async function e2eeDecrypt(keys, enc) {
  const key = keys.find((k) => k.kid === enc.kid);
  if (!key) throw new Error(`no key with kid ${enc.kid} on this device`);
  const epk = base64UrlBytes(enc.epk);
  const devicePoint = base64UrlBytes(key.publicKey);
  const sender = await crypto.subtle.importKey("raw", epk, P256, false, []);
  const shared = await crypto.subtle.deriveBits({ name: "ECDH", public: sender }, key.privateKey, 256);
  const ikm = await crypto.subtle.importKey("raw", shared, "HKDF", false, ["deriveKey"]);
  const salt = new Uint8Array(epk.length + devicePoint.length);
  salt.set(epk);
  salt.set(devicePoint, epk.length);
  const aes = await crypto.subtle.deriveKey(
    { name: "HKDF", hash: "SHA-256", salt, info: E2EE_INFO }, ikm, { name: "AES-GCM", length: 128 }, false, ["decrypt"]);
  const plain = await crypto.subtle.decrypt(
    { name: "AES-GCM", iv: base64UrlBytes(enc.iv), additionalData: utf8Encoder.encode(enc.kid) }, aes, base64UrlBytes(enc.ct));
  const payload = JSON.parse(utf8Decoder.decode(plain));
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) throw new Error("the plaintext is not a JSON object");
  return payload;
}

/** Keys in IndexedDB (browsers): values are kept by structured clone, CryptoKeys included. */
export class IndexedDbKeyStore {
  constructor(name = "kpns-keys") {
    this.name = name;
  }
  _db() {
    return new Promise((resolve, reject) => {
      const request = indexedDB.open(this.name, 1);
      request.onupgradeneeded = () => request.result.createObjectStore("keys");
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  async _run(mode, work) {
    const db = await this._db();
    try {
      return await new Promise((resolve, reject) => {
        const tx = db.transaction("keys", mode);
        const request = work(tx.objectStore("keys"));
        tx.oncomplete = () => resolve(request.result);
        tx.onerror = () => reject(tx.error);
        tx.onabort = () => reject(tx.error);
      });
    } finally {
      db.close();
    }
  }
  get(name) {
    return this._run("readonly", (store) => store.get(name));
  }
  set(name, value) {
    return this._run("readwrite", (store) => store.put(value, name));
  }
}

/** Keys in memory (Node, tests): lost when the process ends. */
export class MemoryKeyStore {
  constructor() {
    this.items = new Map();
  }
  get(name) {
    return this.items.get(name);
  }
  set(name, value) {
    this.items.set(name, value);
  }
}

function defaultKeyStore() {
  return globalThis.indexedDB ? new IndexedDbKeyStore() : new MemoryKeyStore();
}

const CONTENT_FIELDS = ["title", "body", "url", "image", "data"];

function decryptedPush(push, payload) {
  const out = { ...push };
  for (const name of CONTENT_FIELDS) {
    const value = payload[name];
    const ok = name === "data" ? value !== null && typeof value === "object" && !Array.isArray(value) : typeof value === "string";
    if (ok) out[name] = value;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Close codes (docs/protocol.md, section 6) and what the client does.

const CLOSE = {
  1000: "closed by the server",
  1001: "server restarting",
  1006: "connection lost",
  1009: "frame too large",
  1011: "server error",
  1012: "server restarting",
  1013: "server busy",
  4400: "protocol error",
  4403: "token revoked",
  4408: "idle timeout",
  4409: "replaced by another connection of this device",
  4429: "too slow to acknowledge",
  4503: "server busy",
};

/** Plain words for a state event, e.g. "reconnecting in 3.2 s (server restarting)". */
export function describeState(event) {
  switch (event.state) {
    case "reconnecting":
      return `reconnecting in ${(event.delay / 1000).toFixed(1)} s (${event.reason})`;
    case "connected":
      return "connected";
    case "revoked":
      return "token revoked: register again";
    case "replaced":
      return "replaced: this device connected elsewhere";
    case "failed":
      return `failed: ${event.reason}`;
    default:
      return event.reason ? `${event.state} (${event.reason})` : event.state;
  }
}

/** The server refused an HTTP call: `status` and the problem JSON `body`. */
export class HttpError extends Error {
  constructor(status, body) {
    const detail = body && (body.detail || body.title) ? `: ${body.detail || body.title}` : "";
    const fields = body && body.errors ? ` ${JSON.stringify(body.errors)}` : "";
    super(`HTTP ${status}${detail}${fields}`);
    this.name = "HttpError";
    this.status = status;
    this.body = body;
  }
}

const PROFILE_FIELDS = ["platform", "alias", "tags", "locale", "timezone", "app_version", "attributes"];

/**
 * One device of one app: registers it once, keeps its socket, hands pushes to
 * listeners, acks them once handled, resumes without duplicates.
 *
 * Acks are cumulative (protocol 1.1): one `ack_upto` with the highest seq
 * handled, at most every `ackDelayMs` or once `ackBatch` pushes wait, and
 * before a clean stop. `ackEach: true` sends the v1 `ack {id, seq}` per push.
 *
 *   const kpns = new KpnsClient({ clientKey: "ck_…", device: { tags: ["vip"] } });
 *   kpns.on("push", async (push) => { ... });   // acked once this resolves
 *   kpns.start();
 */
export class KpnsClient {
  constructor(options = {}) {
    const location = globalThis.location;
    this.server = String(options.server || (location && location.origin) || "").replace(/\/+$/, "");
    if (!this.server) throw new Error("KpnsClient: `server` is required outside a browser");
    if (!options.clientKey) throw new Error("KpnsClient: `clientKey` is required");
    this.clientKey = options.clientKey;
    this.codec = codecFor(options.encoding);
    this.device = options.device ? pick(options.device, PROFILE_FIELDS) : null;
    if (this.device && !this.device.platform) this.device.platform = location ? "web" : "other";
    this.storage = options.storage || defaultStorage();
    this.storageKey = options.storageKey || `kpns:${this.clientKey}`;
    this.keyStore = options.keyStore || defaultKeyStore();
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    this.fetch = options.fetch || (globalThis.fetch && globalThis.fetch.bind(globalThis));
    if (!this.WebSocket) throw new Error("KpnsClient: no WebSocket; pass one (e.g. the `ws` package) as options.WebSocket");
    if (!this.fetch) throw new Error("KpnsClient: no fetch; pass one as options.fetch");
    this.backoff = { base: 1000, cap: 30000, ...(options.backoff || {}) };
    this.pongTimeout = options.pongTimeout ?? 10000;
    this.connectTimeout = options.connectTimeout ?? 15000;
    this.httpTimeout = options.httpTimeout ?? 10000;
    this.reregister = Boolean(options.reregister);
    this.ackEach = Boolean(options.ackEach);
    this.ackDelayMs = Math.max(0, options.ackDelayMs ?? 50);
    this.ackBatch = Math.max(1, Math.floor(options.ackBatch ?? 64));

    this.state = "idle";
    this.deviceId = null;
    this.lastSeq = 0;
    // acks: ack and ack_upto frames sent.
    this.stats = { connects: 0, pushes: 0, controls: 0, duplicates: 0, acks: 0, pings: 0, pongs: 0 };
    this._listeners = new Map();
    this._stored = null;
    this._running = false;
    this._attempt = 0;
    this._chain = Promise.resolve();
    this._ws = null;
    this._acks = null; // the live socket's cumulative ack state
    this._ackUptoRefused = false; // the server predates protocol 1.1
    this._pendingOpens = [];
    // Seqs above lastSeq a push service brought before the socket did.
    this._seenAhead = new Set();
    this._swListener = null;
    this._registering = null;
    this._e2eeKeys = null;
    this._wake = null;
    this._onlineHandler = null;
    for (const [event, key] of [["push", "onPush"], ["state", "onState"], ["error", "onError"], ["resync", "onResync"],
                                ["recall", "onRecall"], ["update", "onUpdate"]]) {
      if (typeof options[key] === "function") this.on(event, options[key]);
    }
  }

  /**
   * Listen: "push" (push) => maybe a promise, "recall" ({id, seq}: remove
   * that push) and "update" ({id, seq, title, body, url, image, data}: show
   * the new content) => maybe a promise (protocol 1.3, acked after them),
   * "state", "error", "resync",
   * "welcome", "pong", "opened" (a notification of the service worker).
   * A push has `channel`: "socket", or "webpush" when the worker brought it.
   */
  on(event, listener) {
    if (!this._listeners.has(event)) this._listeners.set(event, new Set());
    this._listeners.get(event).add(listener);
    return () => this.off(event, listener);
  }

  off(event, listener) {
    const set = this._listeners.get(event);
    if (set) set.delete(listener);
  }

  _emit(event, value) {
    for (const listener of this._listeners.get(event) || []) {
      try {
        listener(value);
      } catch (err) {
        if (event !== "error") this._emit("error", err);
      }
    }
  }

  /** Start (or keep) the connection; returns at once. */
  start() {
    if (this._running) return this;
    this._running = true;
    if (globalThis.addEventListener && !this._onlineHandler) {
      // Back online: skip the rest of the backoff.
      this._onlineHandler = () => this._wakeUp();
      globalThis.addEventListener("online", this._onlineHandler);
    }
    this._loopDone = this._loop();
    return this;
  }

  /** Close the socket and stop reconnecting. */
  async stop() {
    this._running = false;
    if (this._onlineHandler && globalThis.removeEventListener) {
      globalThis.removeEventListener("online", this._onlineHandler);
      this._onlineHandler = null;
    }
    this._wakeUp();
    this._flushAcks(); // what was handled is acked before the close frame
    if (this._finishSession) this._finishSession({ code: 1000, reason: "stopped by the app", local: true });
    if (this._loopDone) await this._loopDone;
    if (!["revoked", "replaced", "failed"].includes(this.state)) this._setState({ state: "stopped" });
  }

  /** Forget the stored device (the next start registers a new one). */
  async reset() {
    await this.stop();
    await this.storage.removeItem(this.storageKey);
    this._stored = null;
    this.deviceId = null;
    this.lastSeq = 0;
    this.state = "idle";
  }

  /** Report that the user opened this push's notification. */
  opened(push) {
    if (push.channel && push.channel !== "socket") {
      // Brought by a push service: the socket may never have carried it.
      return this.register().then(({ token }) =>
        this._http("POST", "/api/v1/device/opened", { id: push.id, seq: push.seq }, token));
    }
    const frame = { type: "opened", id: push.id, seq: push.seq };
    if (!this._sendLive(frame)) this._pendingOpens.push(frame); // sent after the next welcome
    return Promise.resolve();
  }

  /**
   * Report an app event (e.g. "crash") about the push `messageId`, for canary
   * rollouts (POST /api/v1/device/events). Resolves to `true`, or `false`
   * when this device had reported it already (counted once per device,
   * message and name). Rejects with an HttpError (400: a bad name, 404: a
   * push this device was never sent) or a TimeoutError after `httpTimeout`.
   */
  async reportEvent(messageId, name) {
    const { token } = await this.register();
    const body = await this._http("POST", "/api/v1/device/events", { message_id: String(messageId), name }, token);
    return Boolean(body && body.recorded);
  }

  /**
   * Web Push: register the service worker (served at /sw.js), subscribe with
   * the app's VAPID key and register the subscription as this device's
   * credential. Pushes the worker receives reach "push" listeners too, once:
   * a seq already handled (over the socket or before) is dropped.
   */
  async enableWebPush(options = {}) {
    const container = globalThis.navigator && globalThis.navigator.serviceWorker;
    if (!container) throw new Error("KpnsClient: this browser has no service workers");
    const registration = await this.startServiceWorker(options);
    const { token } = await this.register();
    const { vapid_public_key: key } = await this._http("GET", "/api/v1/device/vapid-public-key", undefined, token);
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options && subscription.options.applicationServerKey, key)) {
      // The app's VAPID keys were regenerated: the old subscription is dead.
      await subscription.unsubscribe();
      subscription = null;
    }
    if (!subscription) {
      subscription = await registration.pushManager.subscribe({
        userVisibleOnly: true, applicationServerKey: base64UrlBytes(key),
      });
    }
    const json = subscription.toJSON();
    await this._http("POST", "/api/v1/device/push-credentials", { kind: "webpush", endpoint: json.endpoint, keys: json.keys }, token);
    return subscription;
  }

  /**
   * Register the service worker and give it this device's token (to report
   * notifications opened), without subscribing: pushes it receives reach
   * this page's "push" listeners. enableWebPush() calls it.
   */
  async startServiceWorker(options = {}) {
    const container = globalThis.navigator && globalThis.navigator.serviceWorker;
    if (!container) throw new Error("KpnsClient: this browser has no service workers");
    this._listenServiceWorker(container);
    const { token } = await this.register();
    await container.register(options.path || "/sw.js", { scope: options.scope || "/" });
    const registration = await container.ready;
    registration.active.postMessage({ type: "kpns:config", server: this.server, token });
    return registration;
  }

  _listenServiceWorker(container) {
    if (this._swListener) return;
    this._swListener = (event) => {
      const data = event.data || {};
      if (data.type === "kpns:push" && data.push) {
        const push = { ...data.push, channel: data.channel || "webpush" };
        this._chain = this._chain.then(() => this._handleNative(push));
      } else if (data.type === "kpns:opened" && data.push) {
        this._emit("opened", data.push);
      }
    };
    container.addEventListener("message", this._swListener);
  }

  /** A push a provider brought: handled unless its seq was seen. */
  async _handleNative(push) {
    if (push.seq <= this.lastSeq || this._seenAhead.has(push.seq)) {
      this.stats.duplicates += 1;
      return;
    }
    await this._deliver(push);
    if (push.seq === this.lastSeq + 1) await this._advance(push.seq);
    else this._seenAhead.add(push.seq); // earlier seqs are still owed by the socket
  }

  async _deliver(push) {
    for (const listener of [...(this._listeners.get("push") || [])]) {
      try {
        await listener(push);
      } catch (err) {
        // A failing handler does not block the stream: it is reported, and
        // the push counts as handled.
        this._emit("error", err);
      }
    }
    this.stats.pushes += 1;
  }

  async _deliverControl(frame) {
    for (const listener of [...(this._listeners.get(frame.type) || [])]) {
      try {
        await listener(frame);
      } catch (err) {
        this._emit("error", err);
      }
    }
    this.stats.controls += 1;
  }

  async _advance(seq) {
    this.lastSeq = seq;
    while (this._seenAhead.delete(this.lastSeq + 1)) this.lastSeq += 1;
    for (const seen of this._seenAhead) if (seen <= this.lastSeq) this._seenAhead.delete(seen);
    if (this._stored) {
      this._stored.lastSeq = this.lastSeq;
      await this._save();
    }
  }

  /** Register now if no device is stored; returns { deviceId, token }. */
  register() {
    // One registration at a time: the connection loop and the service
    // worker's set-up both ask, and must get the same device.
    if (!this._registering) {
      this._registering = this._register().finally(() => { this._registering = null; });
    }
    return this._registering;
  }

  async _register() {
    await this._load();
    if (!this._stored) {
      this._setState({ state: "registering" });
      const body = await this._http("POST", "/api/v1/devices/register", {
        client_key: this.clientKey,
        ...(this.device || { platform: globalThis.location ? "web" : "other" }),
      });
      this._stored = {
        v: 1, server: this.server, clientKey: this.clientKey,
        deviceId: body.id, token: body.token, lastSeq: 0, profile: this.device,
      };
      this.lastSeq = 0;
      await this._save();
    }
    this.deviceId = this._stored.deviceId;
    return { deviceId: this._stored.deviceId, token: this._stored.token };
  }

  /**
   * End-to-end encrypted pushes (docs/e2ee.md): keep a non-extractable key
   * pair and register its public key; returns its kid. `rotate` makes a new
   * pair and keeps the previous one, so pushes queued to it still decrypt.
   */
  async enableEncryption(options = {}) {
    const { token } = await this.register();
    const name = `${this.storageKey}:e2ee`;
    let keys = (await this.keyStore.get(name)) || [];
    if (options.rotate || keys.length === 0) keys = [await e2eeGenerateKey(), ...keys].slice(0, 2);
    const current = keys[0];
    await this._http("PUT", "/api/v1/device/key", { kid: current.kid, public_key: current.publicKey }, token);
    await this.keyStore.set(name, keys);
    this._e2eeKeys = keys;
    return current.kid;
  }

  async _decrypted(push) {
    if (!this._e2eeKeys) this._e2eeKeys = (await this.keyStore.get(`${this.storageKey}:e2ee`)) || [];
    return decryptedPush(push, await e2eeDecrypt(this._e2eeKeys, push.enc));
  }

  /** Change this device's fields (PATCH /api/v1/device); `tags` replaces the set. */
  async update(fields) {
    await this.register();
    const body = await this._http("PATCH", "/api/v1/device", pick(fields, PROFILE_FIELDS), this._stored.token);
    this._stored.profile = { ...(this._stored.profile || {}), ...pick(fields, PROFILE_FIELDS) };
    await this._save();
    return body;
  }

  // -- the connection loop ---------------------------------------------------

  async _loop() {
    while (this._running) {
      let outcome;
      try {
        await this.register();
        if (this.device && !sameProfile(this._stored.profile, this.device)) {
          await this.update(this.device); // the page asked for other tags, alias...
        }
        outcome = await this._session();
      } catch (err) {
        outcome = { error: err };
      }
      if (!this._running) break;
      const next = await this._decide(outcome);
      if (next.stop) {
        this._running = false;
        this._setState({ state: next.stop, reason: next.reason, code: outcome.code });
        break;
      }
      if (next.reregister) {
        await this.storage.removeItem(this.storageKey);
        this._stored = null;
        this.lastSeq = 0;
      }
      const ceiling = Math.min(this.backoff.cap, this.backoff.base * 2 ** Math.min(this._attempt, 30));
      const delay = Math.round(Math.random() * ceiling); // full jitter
      this._attempt += 1;
      this._setState({ state: "reconnecting", delay, reason: next.reason, code: outcome.code });
      await this._sleep(delay);
    }
  }

  async _decide(outcome) {
    if (outcome.error) {
      const err = outcome.error;
      if (err instanceof HttpError) {
        if (err.status === 401) return this._revoked();
        if (err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          this._emit("error", err);
          return { stop: "failed", reason: err.message };
        }
        return { reason: `server error ${err.status}` };
      }
      this._emit("error", err);
      return { reason: "server unreachable" };
    }
    const { code } = outcome;
    if (code === 4403) return this._revoked();
    if (code === 4409) return { stop: "replaced", reason: CLOSE[4409] };
    if (code === 4503 || code === 1013) this._attempt = Math.max(this._attempt, 3);
    if (code === 4400 || code === 1009) this._emit("error", new Error(`closed with ${code}: ${CLOSE[code]}`));
    if (!outcome.opened) {
      // A refused handshake looks like a network error to a browser: ask the
      // HTTP API whether the token still works before retrying.
      try {
        await this._http("GET", "/api/v1/device", undefined, this._stored.token);
      } catch (err) {
        if (err instanceof HttpError && err.status === 401) return this._revoked();
        return { reason: "server unreachable" };
      }
      return { reason: "handshake failed" };
    }
    return { reason: outcome.reason || CLOSE[code] || `closed with ${code}` };
  }

  _revoked() {
    if (this.reregister) return { reregister: true, reason: "token revoked, registering again" };
    return { stop: "revoked", reason: CLOSE[4403] };
  }

  _session() {
    return new Promise((resolve) => {
      const codec = this.codec;
      const url = this.server.replace(/^http/, "ws") + "/ws/v1/device/";
      let ws;
      let done = false;
      let heartbeat = null;
      let pongTimer = null;
      const outcome = { opened: false, welcomed: false };
      // Pushes of this socket handled and not yet acked: `seq` the highest,
      // `count` how many; `sent` the last ack_upto. Acks are for this socket
      // only: a push handled after it closed is covered by the next hello's
      // last_seq, or sent again and acked as a duplicate.
      const acks = { seq: 0, count: 0, sent: 0, timer: null, each: this._ackUptoRefused };
      const finish = (result) => {
        if (done) return;
        done = true;
        clearTimeout(connectTimer);
        clearInterval(heartbeat);
        clearTimeout(pongTimer);
        clearTimeout(acks.timer);
        this._finishSession = null;
        if (this._acks === acks) this._acks = null;
        if (this._ws === ws) this._ws = null;
        if (ws) {
          ws.onopen = ws.onmessage = ws.onclose = null;
          ws.onerror = () => {};
          if (ws.readyState === 0 || ws.readyState === 1) {
            try {
              ws.close(result.local && result.code === 1000 ? 1000 : 4000);
            } catch {
              // already closing
            }
          }
        }
        resolve({ ...outcome, ...result });
      };
      this._finishSession = finish;
      const connectTimer = setTimeout(() => finish({ code: 1006, reason: "connect timeout" }), this.connectTimeout);
      this._setState({ state: "connecting" });
      try {
        ws = new this.WebSocket(url, [codec.name, TOKEN_SUBPROTOCOL_PREFIX + this._stored.token]);
      } catch (err) {
        finish({ error: err });
        return;
      }
      ws.binaryType = "arraybuffer";
      ws.onopen = () => {
        outcome.opened = true;
        this._ws = ws;
        this._acks = acks;
        this._send(ws, { type: "hello", last_seq: this.lastSeq });
      };
      ws.onerror = () => {}; // onclose follows with the code
      ws.onclose = (event) => finish({ code: event.code, reason: event.reason });
      ws.onmessage = (event) => {
        let frame;
        try {
          frame = codec.decode(event.data);
        } catch (err) {
          this._emit("error", err);
          return;
        }
        clearTimeout(pongTimer);
        pongTimer = null;
        if (frame.type === "welcome") {
          clearTimeout(connectTimer);
          outcome.welcomed = true;
          this._attempt = 0;
          this.stats.connects += 1;
          if (frame.last_seq < this.lastSeq) {
            // The server's newest seq is below ours (a restored database):
            // keep ours and new pushes would be dropped forever.
            this.lastSeq = frame.last_seq;
            this._stored.lastSeq = frame.last_seq;
            this._save();
          }
          this.deviceId = frame.device_id;
          const every = Math.max(1, frame.heartbeat) * 1000;
          heartbeat = setInterval(() => {
            this.stats.pings += 1;
            this._send(ws, { type: "ping", t: Date.now() });
            if (!pongTimer) {
              pongTimer = setTimeout(() => finish({ code: 1006, reason: "no answer to ping" }), this.pongTimeout);
            }
          }, every);
          const opens = this._pendingOpens.splice(0);
          for (const open of opens) this._send(ws, open);
          this._setState({ state: "connected", deviceId: frame.device_id });
          this._emit("welcome", frame);
        } else if (frame.type === "push" || frame.type === "recall" || frame.type === "update") {
          // One chain for the inbox frames: handled in seq order.
          this._chain = this._chain.then(() => this._handlePush(frame, acks));
        } else if (frame.type === "pong") {
          this.stats.pongs += 1;
          this._emit("pong", frame);
        } else if (frame.type === "error") {
          if (frame.code === "unknown_type" && acks.sent > 0 && !acks.each) {
            // A server before protocol 1.1 does not know ack_upto: ack each
            // push from now on. What it ignored is recorded by the next
            // hello's last_seq.
            this._ackUptoRefused = acks.each = true;
          }
          this._emit("error", new ProtocolError(frame.code, frame.message));
        } else if (frame.type === "resync") {
          this._emit("resync", frame);
        }
      };
    });
  }

  async _handlePush(push, acks) {
    if (push.seq <= this.lastSeq || this._seenAhead.has(push.seq)) {
      // Sent again after a reconnect, already handled, or brought first by
      // the service worker: never twice. The socket is in seq order, so
      // everything up to this seq is handled now.
      this.stats.duplicates += 1;
      if (push.seq > this.lastSeq) await this._advance(push.seq);
      this._acknowledge(push, acks);
      return;
    }
    if (push.type === "recall" || push.type === "update") {
      await this._deliverControl(push);
      await this._advance(push.seq);
      this._acknowledge(push, acks);
      return;
    }
    if (push.enc) {
      let opened;
      try {
        opened = await this._decrypted(push);
      } catch (error) {
        // Acked all the same (a retry cannot help), never shown as ciphertext.
        this._emit("undecryptable", { push, error });
        await this._advance(push.seq);
        this._acknowledge(push, acks);
        return;
      }
      push = opened;
    }
    await this._deliver({ ...push, channel: "socket" });
    await this._advance(push.seq);
    this._acknowledge(push, acks);
  }

  _acknowledge(push, acks) {
    if (acks !== this._acks) return; // its socket is gone (see _session)
    if (this.ackEach || acks.each) {
      if (this._sendLive({ type: "ack", id: push.id, seq: push.seq })) this.stats.acks += 1;
      return;
    }
    // Pushes are handled one at a time in seq order, so acking the highest
    // handled seq acks exactly the pushes handled.
    acks.seq = Math.max(acks.seq, push.seq);
    acks.count += 1;
    if (acks.count >= this.ackBatch) this._flushAcks(acks);
    else if (acks.timer === null) acks.timer = setTimeout(() => this._flushAcks(acks), this.ackDelayMs);
  }

  _flushAcks(acks = this._acks) {
    if (!acks) return;
    clearTimeout(acks.timer);
    acks.timer = null;
    if (acks !== this._acks || acks.each || acks.seq <= acks.sent) return;
    if (this._sendLive({ type: "ack_upto", seq: acks.seq })) {
      acks.sent = acks.seq;
      acks.count = 0;
      this.stats.acks += 1;
    }
  }

  _sendLive(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1 || this.state !== "connected") return false;
    return this._send(ws, frame);
  }

  _send(ws, frame) {
    try {
      ws.send(this.codec.encode(frame));
      return true;
    } catch (err) {
      this._emit("error", err);
      return false;
    }
  }

  _setState(event) {
    this.state = event.state;
    this._emit("state", { ...event, text: describeState(event) });
  }

  _sleep(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this._wake = null; resolve(); }, ms);
      this._wake = () => { clearTimeout(timer); this._wake = null; resolve(); };
    });
  }

  _wakeUp() {
    if (this._wake) this._wake();
  }

  // -- storage and HTTP ------------------------------------------------------

  async _load() {
    if (this._stored) return;
    const text = await this.storage.getItem(this.storageKey);
    if (!text) return;
    try {
      const stored = JSON.parse(text);
      if (stored && stored.token && stored.server === this.server && stored.clientKey === this.clientKey) {
        this._stored = stored;
        this.lastSeq = Math.max(this.lastSeq, stored.lastSeq || 0);
        this.deviceId = stored.deviceId;
      }
    } catch {
      // unreadable: register again
    }
  }

  async _save() {
    try {
      await this.storage.setItem(this.storageKey, JSON.stringify(this._stored));
    } catch (err) {
      this._emit("error", err);
    }
  }

  async _http(method, path, body, token) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token) headers.Authorization = `Device ${token}`;
    let response;
    try {
      response = await this.fetch(this.server + path, {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(this.httpTimeout),
      });
    } catch (err) {
      if (err && err.name === "TimeoutError") {
        const timeout = new Error(`${method} ${path}: no answer within ${this.httpTimeout} ms`);
        timeout.name = "TimeoutError";
        throw timeout;
      }
      throw err;
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) throw new HttpError(response.status, data);
    return data;
  }
}

function base64UrlBytes(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4);
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Whether a subscription's applicationServerKey (an ArrayBuffer) is `key`. */
function sameKey(buffer, key) {
  if (!buffer) return true; // a browser that does not say: keep it
  const ours = base64UrlBytes(key);
  const theirs = new Uint8Array(buffer);
  return theirs.length === ours.length && theirs.every((byte, i) => byte === ours[i]);
}

function pick(object, names) {
  const out = {};
  for (const name of names) if (object[name] !== undefined) out[name] = object[name];
  return out;
}

function sameProfile(stored, wanted) {
  if (!stored) return false;
  return PROFILE_FIELDS.every((name) => wanted[name] === undefined || canonical(stored[name]) === canonical(wanted[name]));
}

function canonical(value) {
  if (Array.isArray(value)) return JSON.stringify([...value].sort());
  return JSON.stringify(value === undefined ? null : value);
}

export default KpnsClient;
