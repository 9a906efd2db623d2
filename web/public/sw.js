// The page's service worker: network first, the cache when the network fails, so that the page
// works offline after one visit and is never stale online (the server revalidates with ETags).
//
// The page posts the URLs it has fetched ({cache: [...]}), from its first digits on; every
// same-origin GET that succeeds through the worker is cached as it passes. Answers each post
// with {cached: n}, the number of those URLs it could fetch and keep (none while offline).
const CACHE = "digitvae-v1";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function store(urls) {
  const cache = await caches.open(CACHE);
  const mine = urls.filter((url) => new URL(url).origin === self.location.origin);
  const stored = await Promise.allSettled(
    mine.map(async (url) => {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
      await cache.put(url, response);
    }),
  );
  return stored.filter((s) => s.status === "fulfilled").length;
}

self.addEventListener("message", (event) => {
  const urls = event.data?.cache;
  if (!Array.isArray(urls)) return;
  event.waitUntil(
    store(urls).then(
      (n) => event.source?.postMessage({ cached: n }),
      (err) => event.source?.postMessage({ error: String(err) }),
    ),
  );
});

async function answer(request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
  } catch (err) {
    const cached =
      (await cache.match(request, { ignoreVary: true })) ??
      // Offline, any page URL (?model=..., ?variant=...) opens the page itself.
      (request.mode === "navigate" ? await cache.match(new URL("/", self.location.origin).href, { ignoreVary: true }) : undefined);
    if (cached) return cached;
    throw err;
  }
}

self.addEventListener("fetch", (event) => {
  const { request } = event;
  if (request.method !== "GET" || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(answer(request));
});
