// The cadre's page (issue 25): the form, and the list of the reports this cadre filed on this
// device with each one's state. The queue itself (sealed in IndexedDB, sent with the
// Idempotency-Key fixed at filing) is cadre-queue.js, shared with the service worker, which
// sends it by Background Sync when the connection returns even with this page closed; here
// the page sends on the `online` event and after 2, 4 ... 60 s as well (every browser).
// A page whose session's end has passed (a copy the service worker kept, opened offline)
// shows neither the queue nor the form: whoever holds the phone next sees nothing of it.
(function () {
  "use strict";
  var root = document.getElementById("cadre");
  if (!root) return;
  var words = root.dataset;
  var queue = self.rujukCadreQueue(words.owner);
  var form = document.getElementById("cadre-form");
  var list = document.getElementById("queue");
  var editing = null; // the refused report being corrected: its record
  var sending = false;

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

  function file(event) {
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
    queue.seal(report).then(function (sealed) {
      record.iv = sealed.iv; record.sealed = sealed.sealed;
      record.state = "waiting"; delete record.reasons; delete record.signin;
      return queue.put(record);
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
      li.appendChild(button(words.forget, "forget", function () { queue.remove(record.id).then(show); }));
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
    return queue.all().then(function (records) {
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
    queue.unseal(record).then(function (report) {
      editing = record;
      fillForm(report);
      document.getElementById("editing").hidden = false;
      form.elements["victim.name"].focus();
    });
  }

  // --- sending ------------------------------------------------------------------------------
  // A send that failed (no connection after all, intake away) is tried again after 2 s, then
  // 4, 8 ... up to 60 s, and handed to Background Sync; one that needs the cadre to sign in
  // again waits for that.
  var retryIn = 2000, retry = null;
  function send() {
    if (sending) return Promise.resolve();
    if (!navigator.onLine) return queue.sendLater();
    sending = true;
    clearTimeout(retry);
    return queue.sendDue().then(function (allSent) {
      sending = false;
      return show().then(function (records) {
        var stuck = records.filter(function (r) { return r.state === "waiting" && !r.signin; });
        if (!allSent && stuck.length) {
          queue.sendLater();
          retry = setTimeout(send, retryIn);
          retryIn = Math.min(retryIn * 2, 60000);
        } else {
          retryIn = 2000;
        }
      });
    }, function () { sending = false; });
  }

  // --- a session that has ended: nothing of the queue is shown ---------------------------------
  function ended() {
    var until = Date.parse(words.expires || "");
    return !isNaN(until) && Date.now() >= until;
  }
  function close() {
    clearTimeout(retry);
    list.textContent = "";
    ["queue-section", "cadre-form"].forEach(function (id) { document.getElementById(id).hidden = true; });
    document.getElementById("session-ended").hidden = false;
  }
  if (ended()) { close(); return; }
  var left = Date.parse(words.expires || "") - Date.now();
  if (left > 0 && left < 2147483647) setTimeout(close, left);

  form.addEventListener("submit", file);
  window.addEventListener("online", function () { connection(); send(); });
  window.addEventListener("offline", connection);
  connection();
  show().then(send);
  if (navigator.serviceWorker) {
    navigator.serviceWorker.register("/cadre/sw.js", { scope: "/cadre/" });
    // The worker sent what waited (Background Sync): show the new states.
    navigator.serviceWorker.addEventListener("message", function (event) {
      if (event.data === "rujuk-cadre-sent" && !ended()) show();
    });
  }
})();
