// KPNS service worker (Web Push). Served at /sw.js (scope "/"); registered by
// KpnsClient.enableWebPush(). docs/clients.md, "Web Push".
//
// A push carries the message as the socket would ({id, seq, title, body,
// url, image, data}). The worker shows it as a notification, hands it to the
// open pages of the site (the SDK drops it there if the socket brought it
// already: same id and seq), and reports it opened when the notification is
// clicked (POST /api/v1/device/opened, with the device token the page gave).

const CONFIG_CACHE = "kpns-sw";
const CONFIG_KEY = "/kpns-sw-config";

async function config() {
  const cache = await caches.open(CONFIG_CACHE);
  const found = await cache.match(CONFIG_KEY);
  return found ? found.json() : null;
}

async function configure(value) {
  const cache = await caches.open(CONFIG_CACHE);
  await cache.put(CONFIG_KEY, new Response(JSON.stringify(value)));
}

async function pages() {
  return self.clients.matchAll({ type: "window", includeUncontrolled: true });
}

async function handlePush(push) {
  if (!push || typeof push.id !== "string" || !Number.isInteger(push.seq)) return;
  for (const page of await pages()) page.postMessage({ type: "kpns:push", push, channel: "webpush" });
  await self.registration.showNotification(push.title || "", {
    body: push.body || "",
    icon: push.image || undefined,
    tag: push.id, // the same message never shows twice
    data: { push },
  });
}

async function reportOpened(push) {
  const found = await config();
  if (!found || !found.token) return false;
  const response = await fetch(`${found.server}/api/v1/device/opened`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Device ${found.token}` },
    body: JSON.stringify({ id: push.id, seq: push.seq }),
  });
  for (const page of await pages()) page.postMessage({ type: "kpns:opened", push });
  return response.ok;
}

async function openNotification(notification) {
  const push = notification.data && notification.data.push;
  notification.close();
  if (!push) return false;
  const reported = await reportOpened(push);
  if (push.url) {
    const windows = await pages();
    const same = windows.find((w) => w.url === push.url);
    if (same) await same.focus();
    else await self.clients.openWindow(push.url);
  }
  return reported;
}

// What the notificationclick handler does, callable for a test.
self.kpnsOpenNotification = openNotification;

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("message", (event) => {
  const data = event.data || {};
  if (data.type === "kpns:config") event.waitUntil(configure({ server: data.server, token: data.token }));
});

self.addEventListener("push", (event) => {
  let push = null;
  try {
    push = event.data ? event.data.json() : null;
  } catch {
    push = null;
  }
  event.waitUntil(handlePush(push));
});

self.addEventListener("notificationclick", (event) => {
  event.waitUntil(openNotification(event.notification));
});
