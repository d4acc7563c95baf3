// A cadre's "Keluar" on any page of the console (issue 25): first it says how many reports on
// this phone are not sent yet and would be lost, and signs out only on a second press; then
// the queue's database (its key with it), the kept page and the service worker go.
(function () {
  "use strict";
  var signOut = document.querySelector("form.who[data-cadre-owner]");
  if (!signOut || !self.rujukCadreQueue) return;
  var words = signOut.dataset;
  var queue = self.rujukCadreQueue(words.cadreOwner);
  var warned = false;

  function warn(count) {
    var warning = document.getElementById("signout-warning") || document.createElement("p");
    warning.id = "signout-warning";
    warning.className = "error";
    warning.setAttribute("role", "alert");
    warning.textContent = words.signoutWarning.replace(/\{count\}/g, String(count));
    var main = document.getElementById("main") || document.body;
    main.insertBefore(warning, main.firstChild);
    signOut.querySelector("button").textContent = words.signoutConfirm;
  }
  function leave() {
    queue.wipe().then(function () { signOut.submit(); }, function () { signOut.submit(); });
  }
  signOut.addEventListener("submit", function (event) {
    event.preventDefault();
    if (!self.indexedDB) { signOut.submit(); return; }
    queue.unsent().then(function (count) {
      if (count && !warned) { warned = true; warn(count); return; }
      leave();
    }, leave);
  });
})();
