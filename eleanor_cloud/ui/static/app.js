// eleanor-cloud ui: auto-refresh without a page reload. The page works without this
// script (a <noscript> meta refresh reloads it instead). Every few seconds it fetches
// the same URL from this server and swaps in the new <main>; it waits while the tab is
// hidden or the search box has focus, and never runs anything it fetched (DOMParser
// does not execute scripts, and the CSP allows only this file).
(function () {
  "use strict";
  var meta = document.querySelector('meta[name="eleanor-refresh"]');
  var seconds = meta ? Number(meta.getAttribute("content")) : 0;
  if (!(seconds > 0)) { return; }
  var busy = false;

  function paused() {
    var el = document.activeElement;
    if (document.hidden || busy) { return true; }
    if (el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA")) {
      return true;
    }
    return false;
  }

  // Which <details> are open (a result, the history), so a refresh keeps them open.
  function keyOf(d, i) {
    var holder = d.closest("[data-stage]");
    return holder ? holder.getAttribute("data-stage") + "|" + d.className : d.className + "|" + i;
  }

  function openKeys(root) {
    var keys = [];
    root.querySelectorAll("details").forEach(function (d, i) { if (d.open) { keys.push(keyOf(d, i)); } });
    return keys;
  }

  function reopen(root, keys) {
    root.querySelectorAll("details").forEach(function (d, i) {
      if (keys.indexOf(keyOf(d, i)) >= 0) { d.open = true; }
    });
  }

  function tick() {
    if (paused()) { schedule(); return; }
    busy = true;
    fetch(window.location.href, { cache: "no-store", credentials: "same-origin",
                                  headers: { "Accept": "text/html" } })
      .then(function (response) { return response.text(); })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) {
          var keys = openKeys(current);
          var node = document.importNode(fresh, true);
          reopen(node, keys);
          current.replaceWith(node);
          document.body.classList.remove("stale");
        }
      })
      .catch(function () { document.body.classList.add("stale"); })
      .then(function () { busy = false; schedule(); });
  }

  function schedule() { window.setTimeout(tick, seconds * 1000); }
  schedule();
})();
