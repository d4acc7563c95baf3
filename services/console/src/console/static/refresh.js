// Lists that refresh themselves, cheaply. Each element with data-poll (and hx-trigger="poll")
// is asked for again after data-poll seconds. The request carries the ETag of what is shown
// (If-None-Match); an unchanged list answers 304 with no body and the wait doubles, up to
// data-poll-max seconds; a change brings the wait back to data-poll. While the tab is hidden,
// the wait is data-poll-hidden seconds; on coming back, the list is asked for at once.
// A list with data-news="<id>" announces its new items (data-item) in that live region.
(function () {
  "use strict";
  var state = {}; // by element id: { wait, timer, etag, items }
  var focusedIn = null; // the list that held the focus when its refresh was swapped in

  function seconds(el, name, fallback) {
    var value = parseFloat(el.getAttribute(name));
    return value > 0 ? value : fallback;
  }
  function base(el) { return seconds(el, "data-poll", 3); }
  function most(el) { return seconds(el, "data-poll-max", base(el)); }
  function hiddenWait(el) { return seconds(el, "data-poll-hidden", most(el)); }

  function itemsOf(el) {
    var ids = [];
    el.querySelectorAll("[data-item]").forEach(function (item) { ids.push(item.dataset.item); });
    return ids;
  }

  function schedule(id) {
    var s = state[id], el = document.getElementById(id);
    if (!s || !el) return;
    clearTimeout(s.timer);
    var wait = document.hidden ? hiddenWait(el) : s.wait;
    s.timer = setTimeout(function () {
      var now = document.getElementById(id);
      if (now && window.htmx) window.htmx.trigger(now, "poll");
    }, wait * 1000);
  }

  function watch(el) {
    if (!el.id) return;
    var s = state[el.id];
    if (!s) s = state[el.id] = { wait: base(el), timer: null, etag: null, items: null };
    s.etag = el.getAttribute("data-etag") || s.etag;
    s.items = itemsOf(el);
    schedule(el.id);
  }

  function announce(el, before) {
    var region = el.dataset.news && document.getElementById(el.dataset.news);
    if (!region || before === null) return;
    var fresh = itemsOf(el).filter(function (id) { return before.indexOf(id) < 0; });
    if (!fresh.length) return;
    var words = fresh.length === 1 ? region.dataset.one : region.dataset.many;
    region.textContent = (words || "").replace("{count}", String(fresh.length));
  }

  document.addEventListener("htmx:configRequest", function (event) {
    var el = event.detail.elt, s = el && state[el.id];
    if (s && s.etag && el.hasAttribute("data-poll")) event.detail.headers["If-None-Match"] = s.etag;
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var el = event.detail.elt, s = el && state[el.id];
    if (!s) return;
    var status = event.detail.xhr ? event.detail.xhr.status : 0;
    if (status === 304 || !event.detail.successful) {
      s.wait = Math.min(s.wait * 2, most(el)); // unchanged, or offline: ask less often
      schedule(el.id);
    }
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var el = event.detail.elt, active = document.activeElement;
    focusedIn = el && el.id && active && active !== el && el.contains(active) ? el.id : null;
  });

  // A changed list was swapped in: a new element with the same id. htmx puts the focus back
  // on the control with the same id; if that control is gone, the list itself takes it, so
  // a keyboard or screen reader user is not thrown back to the top of the page.
  document.addEventListener("htmx:load", function (event) {
    var el = event.detail.elt;
    if (!el || !el.hasAttribute || !el.hasAttribute("data-poll")) return;
    var before = state[el.id] ? state[el.id].items : null;
    if (state[el.id]) state[el.id].wait = base(el);
    watch(el);
    announce(el, before);
    if (focusedIn === el.id && (!document.activeElement || document.activeElement === document.body)) {
      if (!el.hasAttribute("tabindex")) el.setAttribute("tabindex", "-1");
      el.focus();
    }
    focusedIn = null;
  });

  document.addEventListener("visibilitychange", function () {
    Object.keys(state).forEach(function (id) {
      var el = document.getElementById(id);
      if (!el) return;
      if (document.hidden) {
        schedule(id);
      } else {
        state[id].wait = base(el);
        clearTimeout(state[id].timer);
        if (window.htmx) window.htmx.trigger(el, "poll");
      }
    });
  });

  function start() { document.querySelectorAll("[data-poll]").forEach(watch); }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
