// Live countdowns to acknowledgement deadlines. Without script the deadline is still printed
// as a time next to each countdown; this only keeps the "time left" text current, in the
// page's language: the server gives each unit's words (data-units on <body>, from Babel).
(function () {
  "use strict";
  var units = { day: "{0}d", hour: "{0}h", minute: "{0}m", second: "{0}s" };
  try {
    units = JSON.parse(document.body.dataset.units || "null") || units;
  } catch (e) { /* the English fallback above */ }
  function unit(name, n, pad) {
    var text = pad && n < 10 ? "0" + n : String(n);
    return units[name].replace("{0}", text);
  }
  function span(seconds) {
    var s = Math.abs(Math.floor(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d) return unit("day", d) + " " + unit("hour", h, true);
    if (h) return unit("hour", h) + " " + unit("minute", m, true);
    if (m) return unit("minute", m) + " " + unit("second", r, true);
    return unit("second", r);
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
