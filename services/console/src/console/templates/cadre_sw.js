// The cadre page's service worker (issue 25): keeps the page and its files so that the form
// opens with no signal, and sends the queue when the connection returns even with the page
// closed (Background Sync, where the browser has it). It keeps no report: reports wait in
// IndexedDB, sealed by the page; it opens them with the same non-extractable key.
// Version {{ build }}: a new console is a new cache, and the old one is deleted.
"use strict";
importScripts("{{ static_url('cadre-queue.js') }}");
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

// The page asked for a sync when a report could not go: its tag names whose queue. Only that
// cadre's queue is sent, and the console files it only while that cadre is signed in (the
// Rujuk-Queue-Owner header). Not all sent: the promise fails and the browser tries later.
self.addEventListener("sync", (event) => {
  const prefix = self.rujukCadreQueue.SYNC_PREFIX;
  if (!event.tag.startsWith(prefix)) return;
  const queue = self.rujukCadreQueue(event.tag.slice(prefix.length));
  event.waitUntil(
    queue.sendDue().then((allSent) => self.clients.matchAll({ type: "window" }).then((pages) => {
      pages.forEach((page) => page.postMessage("rujuk-cadre-sent"));
      if (!allSent) {
        return queue.all().then((records) => {
          // One that waits for its cadre to sign in again is not worth the browser's retries.
          if (records.some((r) => r.state === "waiting" && !r.signin)) throw new Error("not sent yet");
        });
      }
    }))
  );
});
