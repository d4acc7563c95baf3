// Live countdowns to acknowledgement deadlines. Without script the deadline is still printed
// as a time next to each countdown; this only keeps the "time left" text current.
(function () {
  "use strict";
  function span(seconds) {
    var s = Math.abs(Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    if (d) return d + " d " + two(h) + " h";
    if (h) return h + " h " + two(m) + " m";
    if (m) return m + " m " + two(r) + " s";
    return r + " s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll(".countdown[data-deadline]").forEach(function (el) {
      var left = (Date.parse(el.dataset.deadline) - now) / 1000;
      if (isNaN(left)) return;
      if (left < 0) {
        el.textContent = (el.dataset.overdue || "") + " " + span(left);
        el.classList.add("late");
      } else {
        el.textContent = span(left);
      }
    });
  }
  tick();
  setInterval(tick, 1000);
})();
