// The cadre's queue (issue 25). A report filed here, with or without signal, waits on this
// device sealed with AES-GCM under a key WebCrypto made non-extractable, kept in IndexedDB
// (a database of this cadre's own); it keeps the Idempotency-Key it got when it was filed, so
// sending it again never makes a second case. It is sent when there is a connection. After
// intake's 202 the sealed copy is deleted and only the case id stays, until the cadre clears
// it or signs out. A refused one keeps its sealed copy to be corrected and sent again.
// Signing out deletes the key, the queue and the kept page, after a warning if reports wait.
(function () {
  "use strict";
  var root = document.getElementById("cadre");
  if (!root) return;
  var words = root.dataset;
  var DB = "rujuk-cadre-" + words.owner;
  var form = document.getElementById("cadre-form");
  var list = document.getElementById("queue");
  var editing = null; // the refused report being corrected: its record
  var sending = false;
  var keyMade = null;

  // --- storage ------------------------------------------------------------------------------
  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore("keys");
        request.result.createObjectStore("reports", { keyPath: "id" });
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }
  function inStore(store, mode, work) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var t = db.transaction(store, mode), asked = work(t.objectStore(store)), result;
        if (asked) asked.onsuccess = function () { result = asked.result; };
        t.oncomplete = function () { db.close(); resolve(result); };
        t.onerror = t.onabort = function () { db.close(); reject(t.error); };
      });
    });
  }
  function all() { return inStore("reports", "readonly", function (s) { return s.getAll(); }); }
  function put(record) { return inStore("reports", "readwrite", function (s) { s.put(record); }); }
  function remove(id) { return inStore("reports", "readwrite", function (s) { s["delete"](id); }); }

  function key() {
    if (!keyMade) {
      keyMade = inStore("keys", "readonly", function (s) { return s.get("queue"); }).then(function (found) {
        if (found) return found;
        return crypto.subtle.generateKey({ name: "AES-GCM", length: 256 }, false, ["encrypt", "decrypt"])
          .then(function (made) {
            return inStore("keys", "readwrite", function (s) { s.add(made, "queue"); })
              .then(function () { return made; });
          });
      });
    }
    return keyMade;
  }
  function seal(report) {
    var iv = crypto.getRandomValues(new Uint8Array(12));
    var plain = new TextEncoder().encode(JSON.stringify(report));
    return key().then(function (k) { return crypto.subtle.encrypt({ name: "AES-GCM", iv: iv }, k, plain); })
      .then(function (sealed) { return { iv: iv, sealed: sealed }; });
  }
  function unseal(record) {
    return key().then(function (k) { return crypto.subtle.decrypt({ name: "AES-GCM", iv: record.iv }, k, record.sealed); })
      .then(function (plain) { return JSON.parse(new TextDecoder().decode(plain)); });
  }
  function newId() {
    var bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
  }

  // --- the form -----------------------------------------------------------------------------
  function checked(name) { return form.elements[name] ? form.elements[name].checked : false; }
  function value(name) { var v = (form.elements[name].value || "").trim(); return v === "" ? null : v; }

  function reportOfForm() {
    var area = (value("area") || "/").split("/");
    var age = value("victim.age_years");
    var report = {
      channel: "outreach",
      district_code: words.district,
      kecamatan: area[0] || null,
      village: area[1] || value("village"),
      victim: { name: value("victim.name"), age_years: age === null ? null : Number(age),
        sex: value("victim.sex"), disability: checked("victim.disability") },
      reporter: { relationship: value("reporter.relationship") || "cadre" },
      incident: { violence_types: Array.prototype.filter.call(
        form.querySelectorAll("input[name='incident.violence_types']"), function (b) { return b.checked; }
      ).map(function (b) { return b.value; }) },
      risk: { immediate_danger: checked("risk.immediate_danger"), injury: checked("risk.injury"),
        perpetrator_has_access: checked("risk.perpetrator_has_access") },
      consent: { share_with_health: checked("consent.share_with_health"),
        share_with_police: checked("consent.share_with_police"),
        share_with_shelter: checked("consent.share_with_shelter"),
        given_by: value("consent.given_by") || "survivor" }
    };
    if (value("victim.nik")) report.victim.nik = value("victim.nik");
    if (value("incident.narrative")) report.incident.narrative = value("incident.narrative");
    return report;
  }

  function fillForm(report) {
    form.reset();
    var area = (report.kecamatan || "") + "/" + (report.village || "");
    var select = form.elements.area, found = false;
    Array.prototype.forEach.call(select.options, function (o) {
      if (o.value === area) { select.value = area; found = true; }
    });
    if (!found) {
      Array.prototype.forEach.call(select.options, function (o) {
        if (o.value === (report.kecamatan || "") + "/") { select.value = o.value; }
      });
      form.elements.village.value = report.village || "";
    }
    form.elements["victim.name"].value = report.victim.name || "";
    form.elements["victim.age_years"].value = report.victim.age_years === null ? "" : report.victim.age_years;
    form.elements["victim.sex"].value = report.victim.sex || "";
    form.elements["victim.nik"].value = report.victim.nik || "";
    form.elements["victim.disability"].checked = !!report.victim.disability;
    form.querySelectorAll("input[name='incident.violence_types']").forEach(function (b) {
      b.checked = report.incident.violence_types.indexOf(b.value) >= 0;
    });
    form.elements["incident.narrative"].value = report.incident.narrative || "";
    form.elements["reporter.relationship"].value = report.reporter.relationship;
    ["risk.immediate_danger", "risk.injury", "risk.perpetrator_has_access"].forEach(function (n) {
      form.elements[n].checked = !!report.risk[n.split(".")[1]];
    });
    ["share_with_health", "share_with_police", "share_with_shelter"].forEach(function (n) {
      form.elements["consent." + n].checked = !!report.consent[n];
    });
    form.elements["consent.given_by"].value = report.consent.given_by;
  }

  function missing(report) {
    var labels = [];
    if (!report.victim.name) labels.push("victim-name");
    if (report.victim.age_years === null) labels.push("victim-age_years");
    if (!report.victim.sex) labels.push("victim-sex");
    if (!report.incident.violence_types.length) labels.push("violence-types");
    return labels.map(function (id) {
      var label = form.querySelector("label[for='c-" + id + "'], #c-" + id + " legend");
      return label ? label.textContent.replace("*", "").trim() : id;
    });
  }

  function queue(event) {
    event.preventDefault();
    var problem = document.getElementById("form-problem");
    if (!window.crypto || !crypto.subtle || !window.indexedDB) {
      problem.textContent = words.noCrypto; problem.hidden = false; return;
    }
    var report = reportOfForm();
    var absent = missing(report);
    if (absent.length) {
      problem.textContent = absent.join(", ") + " ?"; problem.hidden = false; return;
    }
    problem.hidden = true;
    var record = editing || { id: newId(), key: newId(), filedAt: new Date().toISOString() };
    seal(report).then(function (sealed) {
      record.iv = sealed.iv; record.sealed = sealed.sealed;
      record.state = "waiting"; delete record.reasons; delete record.signin;
      return put(record);
    }).then(function () {
      editing = null;
      form.reset();
      document.getElementById("editing").hidden = true;
      return show();
    }).then(send);
  }

  // --- what the cadre sees ------------------------------------------------------------------
  function item(record) {
    var li = document.createElement("li");
    li.dataset.id = record.id;
    li.dataset.state = record.state;
    var time = new Date(record.filedAt).toLocaleTimeString(document.documentElement.lang, { hour: "2-digit", minute: "2-digit" });
    var text = words.filedAt.replace("{time}", time) + " ";
    var state = document.createElement("strong");
    state.textContent = (words["state" + record.state.charAt(0).toUpperCase() + record.state.slice(1)] || record.state)
      .replace("{case_id}", record.caseId || "");
    li.appendChild(document.createTextNode(text));
    li.appendChild(state);
    if (record.signin) { var p = document.createElement("p"); p.textContent = words.signin; li.appendChild(p); }
    if (record.state === "refused") {
      var reasons = document.createElement("ul");
      (record.reasons || []).forEach(function (r) { var x = document.createElement("li"); x.textContent = r; reasons.appendChild(x); });
      li.appendChild(reasons);
      li.appendChild(button(words.fix, "fix", function () { correct(record); }));
    }
    if (record.state === "accepted") {
      var a = document.createElement("a");
      a.href = "/cases/" + encodeURIComponent(record.caseId);
      a.textContent = words.status;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(a);
      li.appendChild(button(words.forget, "forget", function () { remove(record.id).then(show); }));
    }
    return li;
  }
  function button(text, name, act) {
    var b = document.createElement("button");
    b.type = "button"; b.className = "link"; b.dataset.act = name; b.textContent = text;
    b.addEventListener("click", act);
    return b;
  }
  function show() {
    return all().then(function (records) {
      records.sort(function (a, b) { return a.filedAt < b.filedAt ? -1 : 1; });
      list.textContent = "";
      records.forEach(function (r) { list.appendChild(item(r)); });
      document.getElementById("queue-empty").hidden = records.length > 0;
      return records;
    });
  }
  function connection() {
    document.getElementById("connection").textContent = navigator.onLine ? words.online : words.offline;
  }
  function correct(record) {
    unseal(record).then(function (report) {
      editing = record;
      fillForm(report);
      document.getElementById("editing").hidden = false;
      form.elements["victim.name"].focus();
    });
  }

  // --- sending ------------------------------------------------------------------------------
  function sendOne(record) {
    record.state = "sent";
    return put(record).then(show).then(function () { return unseal(record); }).then(function (report) {
      return fetch("/cadre/reports", {
        method: "POST", credentials: "same-origin", redirect: "manual", cache: "no-store",
        headers: { "Content-Type": "application/json", "Idempotency-Key": record.key },
        body: JSON.stringify(report)
      });
    }).then(function (response) {
      if (response.status === 202) {
        return response.json().then(function (answer) {
          // The sealed copy goes; only the case id stays.
          return put({ id: record.id, filedAt: record.filedAt, state: "accepted", caseId: answer.case_id });
        }).then(function () { return true; });
      }
      if (response.status === 422 || response.status === 400) {
        return response.json().then(function (answer) {
          record.state = "refused"; record.reasons = answer.reasons;
          return put(record);
        }).then(function () { return true; });
      }
      record.state = "waiting";
      record.signin = response.status === 401 || response.type === "opaqueredirect";
      return put(record).then(function () { return false; });
    }, function () {
      record.state = "waiting"; // no connection after all
      return put(record).then(function () { return false; });
    });
  }
  // A send that failed (no connection after all, intake away) is tried again after 2 s, then
  // 4, 8 ... up to 60 s; one that needs the cadre to sign in again waits for that.
  var retryIn = 2000, retry = null;
  function send() {
    if (sending || !navigator.onLine) return Promise.resolve();
    sending = true;
    clearTimeout(retry);
    return all().then(function (records) {
      var due = records.filter(function (r) { return r.state === "waiting" || r.state === "sent"; });
      return due.reduce(function (chain, record) {
        return chain.then(function (goOn) { return goOn ? sendOne(record) : false; });
      }, Promise.resolve(true));
    }).then(function (allSent) {
      sending = false;
      return show().then(function (records) {
        var stuck = records.filter(function (r) { return r.state === "waiting" && !r.signin; });
        if (!allSent && stuck.length) {
          retry = setTimeout(send, retryIn);
          retryIn = Math.min(retryIn * 2, 60000);
        } else {
          retryIn = 2000;
        }
      });
    }, function () { sending = false; });
  }

  // --- signing out: the key, the queue and the kept page go -----------------------------------
  function wipe() {
    keyMade = null;
    var gone = [new Promise(function (resolve) {
      var request = indexedDB.deleteDatabase(DB);
      request.onsuccess = request.onerror = request.onblocked = function () { resolve(); };
    })];
    if (window.caches) {
      gone.push(caches.keys().then(function (names) {
        return Promise.all(names.filter(function (n) { return n.indexOf("rujuk-cadre-") === 0; })
          .map(function (n) { return caches["delete"](n); }));
      }));
    }
    if (navigator.serviceWorker) {
      gone.push(navigator.serviceWorker.getRegistrations().then(function (found) {
        return Promise.all(found.map(function (r) { return r.unregister(); }));
      }));
    }
    return Promise.all(gone);
  }
  var signOut = document.querySelector("form.who");
  var warned = false;
  if (signOut) {
    signOut.addEventListener("submit", function (event) {
      event.preventDefault();
      all().then(function (records) {
        var waiting = records.filter(function (r) { return r.state !== "accepted"; }).length;
        if (waiting && !warned) {
          warned = true;
          var warning = document.getElementById("signout-warning") || document.createElement("p");
          warning.id = "signout-warning"; warning.className = "error"; warning.setAttribute("role", "alert");
          warning.textContent = words.signoutWarning.replace("{count}", String(waiting));
          root.insertBefore(warning, root.firstChild);
          signOut.querySelector("button").textContent = words.signoutConfirm;
          return;
        }
        return wipe().then(function () { signOut.submit(); });
      }, function () { wipe().then(function () { signOut.submit(); }); });
    });
  }

  form.addEventListener("submit", queue);
  window.addEventListener("online", function () { connection(); send(); });
  window.addEventListener("offline", connection);
  connection();
  show().then(send);
  if (navigator.serviceWorker) navigator.serviceWorker.register("/cadre/sw.js", { scope: "/cadre/" });
})();
