// The cadre page's service worker (issue 25): keeps the page and its files so that the form
// opens with no signal. It keeps no report: reports wait in IndexedDB, sealed by the page.
// Version {{ build }}: a new console is a new cache, and the old one is deleted.
"use strict";
const CACHE = "rujuk-cadre-{{ build }}";
const PAGE = "/cadre/";
const FILES = [{% for name in shell %}"{{ static_url(name) }}", {% endfor %}"/cadre/manifest.webmanifest"];

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll([PAGE, ...FILES])).then(() => self.skipWaiting())
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((n) => n.startsWith("rujuk-cadre-") && n !== CACHE).map((n) => caches.delete(n))))
      .then(() => self.clients.claim())
  );
});

// The page: from the network when there is one (a fresh copy kept), else the kept copy.
// Its files: kept ones first (their names change with their content). Anything else: the
// network only (reports, sign-in, other pages are never kept).
self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (url.pathname === PAGE) {
    event.respondWith(
      fetch(request).then((response) => {
        if (response.ok && !response.redirected) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(PAGE, copy));
        }
        return response;
      }).catch(() => caches.match(PAGE).then((kept) => kept || Response.error()))
    );
  } else if (FILES.includes(url.pathname)) {
    event.respondWith(caches.match(url.pathname).then((kept) => kept || fetch(request)));
  }
});
