// The cadre's queue on the device (issue 25), shared by the page, every page's sign-out and
// the service worker (Background Sync): a report waits in IndexedDB, in a database of its
// cadre's own, sealed with AES-GCM under a key WebCrypto made non-extractable, with the
// Idempotency-Key it got when it was filed, so whichever path sends it, intake makes one case.
// After intake's 202 only the case id stays; "accepted" is final and never written over.
(function (scope) {
  "use strict";
  var SEND_URL = "/cadre/reports";

  scope.rujukCadreQueue = function (owner) {
    var name = "rujuk-cadre-" + owner;
    var keyMade = null;

    // create: the page makes the database; the worker and the sign-out only open one that
    // exists (a sync that fires after a wipe must not bring an empty database back).
    function openDb(create) {
      return new Promise(function (resolve, reject) {
        var request = indexedDB.open(name, 1);
        request.onupgradeneeded = function (event) {
          if (!create && event.oldVersion === 0) { request.transaction.abort(); return; }
          request.result.createObjectStore("keys");
          request.result.createObjectStore("reports", { keyPath: "id" });
        };
        request.onsuccess = function () { resolve(request.result); };
        request.onerror = function () { reject(request.error); };
      });
    }
    function inStore(store, mode, work, create) {
      return openDb(create).then(function (db) {
        return new Promise(function (resolve, reject) {
          var t = db.transaction(store, mode), result;
          var asked = work(t.objectStore(store), function (value) { result = value; });
          if (asked) asked.onsuccess = function () { result = asked.result; };
          t.oncomplete = function () { db.close(); resolve(result); };
          t.onerror = t.onabort = function () { db.close(); reject(t.error); };
        });
      });
    }
    function all() {
      return inStore("reports", "readonly", function (s) { return s.getAll(); }, false)
        .catch(function () { return []; });
    }
    function put(record) { return inStore("reports", "readwrite", function (s) { s.put(record); }, true); }
    function remove(id) { return inStore("reports", "readwrite", function (s) { s["delete"](id); }, false); }
    // Read, change and write one report in one transaction; an accepted or deleted one is
    // left alone (the page and the worker may both be sending it). Gives the new record.
    function update(id, change) {
      return inStore("reports", "readwrite", function (s, done) {
        var found = s.get(id);
        found.onsuccess = function () {
          var record = found.result;
          if (!record || record.state === "accepted") { done(null); return; }
          var changed = change(record);
          s.put(changed);
          done(changed);
        };
      }, false);
    }

    function key(create) {
      if (keyMade) return keyMade;
      var found = inStore("keys", "readonly", function (s) { return s.get("queue"); }, create)
        .then(function (kept) {
          if (kept || !create) return kept;
          return crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"])
            .then(function (made) {
              return inStore("keys", "readwrite", function (s) { s.add(made, "queue"); }, true)
                .then(function () { return made; });
            });
        });
      // Kept for the next call only once there is a key: one made twice would seal reports
      // the other cannot open.
      keyMade = found.then(function (k) { if (!k) keyMade = null; return k; },
        function (error) { keyMade = null; throw error; });
      return keyMade;
    }
    function seal(report) {
      var iv = crypto.getRandomValues(new Uint8Array(12));
      var plain = new TextEncoder().encode(JSON.stringify(report));
      return key(true).then(function (k) { return crypto.subtle.encrypt({ name: "AES-GCM", iv: iv }, k, plain); })
        .then(function (sealed) { return { iv: iv, sealed: sealed }; });
    }
    function unseal(record) {
      return key(false).then(function (k) {
        if (!k) throw new Error("no key");
        return crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv }, k, record.sealed);
      }).then(function (plain) { return JSON.parse(new TextDecoder().decode(plain)); });
    }

    // One report to the console: true when intake answered (accepted or refused), false when
    // it should be tried again (no connection, intake away) or the cadre must sign in.
    function sendOne(id) {
      var record;
      return update(id, function (r) { r.state = "sent"; return r; }).then(function (found) {
        if (!found) return null;
        record = found;
        return unseal(record).then(function (report) {
          return fetch(SEND_URL, {
            method: "POST", credentials: "same-origin", redirect: "manual", cache: "no-store",
            headers: { "Content-Type": "application/json", "Idempotency-Key": record.key,
              "Rujuk-Queue-Owner": owner },
            body: JSON.stringify(report)
          });
        });
      }).then(function (response) {
        if (!response) return true;
        if (response.status === 202) {
          return response.json().then(function (answer) {
            return update(id, function () {  // the sealed copy goes; only the case id stays
              return { id: id, filedAt: record.filedAt, state: "accepted", caseId: answer.case_id };
            });
          }).then(function () { return true; });
        }
        if (response.status === 422 || response.status === 400) {
          return response.json().then(function (answer) {
            return update(id, function (r) { r.state = "refused"; r.reasons = answer.reasons; delete r.signin; return r; });
          }).then(function () { return true; });
        }
        // 401 or a redirect to sign in: the session ended; 409: another cadre is signed in.
        var signin = response.status === 401 || response.status === 409 || response.type === "opaqueredirect";
        return update(id, function (r) { r.state = "waiting"; r.signin = signin; return r; })
          .then(function () { return false; });
      }, function () {
        return update(id, function (r) { r.state = "waiting"; return r; })  // no connection after all
          .then(function () { return false; });
      });
    }
    // Everything due, one by one, stopping at the first that could not be sent: gives
    // whether all went.
    function sendDue() {
      return all().then(function (records) {
        var due = records.filter(function (r) { return r.state === "waiting" || r.state === "sent"; });
        return due.reduce(function (chain, r) {
          return chain.then(function (goOn) { return goOn ? sendOne(r.id) : false; });
        }, Promise.resolve(true));
      });
    }
    function unsent() {
      return all().then(function (records) {
        return records.filter(function (r) { return r.state !== "accepted"; }).length;
      });
    }
    // Signing out: the database (the key with it), every kept copy of the page and the
    // service worker go.
    function wipe() {
      keyMade = null;
      var gone = [new Promise(function (resolve) {
        var request = indexedDB.deleteDatabase(name);
        request.onsuccess = request.onerror = request.onblocked = function () { resolve(); };
      })];
      if (scope.caches) {
        gone.push(caches.keys().then(function (names) {
          return Promise.all(names.filter(function (n) { return n.indexOf("rujuk-cadre-") === 0; })
            .map(function (n) { return caches["delete"](n); }));
        }));
      }
      if (scope.navigator && navigator.serviceWorker) {
        gone.push(navigator.serviceWorker.getRegistrations().then(function (found) {
          return Promise.all(found.map(function (r) { return r.unregister(); }));
        }));
      }
      return Promise.all(gone);
    }
    // Ask the browser to send the queue when the connection returns, even with the page
    // closed (Background Sync: Chromium). Elsewhere the page's own resend is all there is.
    function sendLater() {
      if (!scope.navigator || !navigator.serviceWorker || !scope.SyncManager) return Promise.resolve(false);
      return navigator.serviceWorker.ready.then(function (registration) {
        return registration.sync.register(SYNC_PREFIX + owner).then(function () { return true; });
      })["catch"](function () { return false; });
    }

    return { all: all, put: put, remove: remove, seal: seal, unseal: unseal, sendDue: sendDue,
      unsent: unsent, wipe: wipe, sendLater: sendLater };
  };
  var SYNC_PREFIX = "rujuk-cadre-send:";
  scope.rujukCadreQueue.SYNC_PREFIX = SYNC_PREFIX;
})(self);
