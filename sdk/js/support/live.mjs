// Shared helpers for the SDK tests that talk to a real KPNS server.
// tests/sdk/test_js_sdk.py starts the server and sets the environment.
import net from "node:net";

export const SERVER = process.env.KPNS_SERVER;
export const CLIENT_KEY = process.env.KPNS_CLIENT_KEY;
export const CONTROL = process.env.KPNS_CONTROL;
export const LIVE_SKIP = SERVER && CLIENT_KEY && CONTROL
  ? false
  : "KPNS_SERVER, KPNS_CLIENT_KEY and KPNS_CONTROL are not set (run through pytest tests/sdk)";

async function control(method, path, body) {
  const response = await fetch(CONTROL + path, {
    method,
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10000),
  });
  const data = await response.json();
  if (!response.ok) throw new Error(`control ${path}: ${JSON.stringify(data)}`);
  return data;
}

/** Send a push to devices through the real services; returns { message_id, targets }. */
export const push = (deviceIds, fields = {}) =>
  control("POST", "/push", { device_ids: deviceIds, title: "Hello", ...fields });
export const deliveries = (messageId) => control("GET", `/deliveries?message=${messageId}`);
/** The app events recorded about a message: { deviceId: [names] }. */
export const events = (messageId) => control("GET", `/events?message=${messageId}`);
export const encryptedPush = (deviceId, payload) =>
  control("POST", "/encrypted-push", { device_id: deviceId, payload });
/** Recall a message, or update it when `changes` is given; returns { control_id, targets }. */
export const recall = (messageId, changes) =>
  control("POST", "/recall", changes ? { message_id: messageId, changes } : { message_id: messageId });
export const revoke = (deviceId) => control("POST", "/revoke", { device_id: deviceId });
/** `count` pushes to one device committed at once; returns { message_ids }. */
export const burst = (deviceId, count) => control("POST", "/burst", { device_id: deviceId, count });
/** How many of a device's deliveries are in each status, e.g. { delivered: 500 }. */
export const deviceStatuses = (deviceId) => control("GET", `/deliveries?device=${deviceId}`);

/** Poll `check` until it returns a truthy value; fail after `timeout` ms. */
export async function waitFor(check, { timeout = 10000, interval = 50, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((resolve) => setTimeout(resolve, interval));
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

export const waitForState = (client, state, timeout = 10000) =>
  waitFor(() => client.state === state, { timeout, what: `state ${state} (now ${client.state})` });

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A TCP proxy in front of the server: `cut()` drops every connection and
 * refuses new ones (a network outage) until `restore()`.
 */
export async function startProxy(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let up = true;
  const server = net.createServer((client) => {
    if (!up) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", drop).on("close", drop);
    upstream.on("error", drop).on("close", drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
      sockets.clear();
    },
    restore() {
      up = true;
    },
    close() {
      this.cut();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}
