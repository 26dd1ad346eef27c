// segmint workspace: small progressive enhancements; every page also works without them.
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // The menu is open on wide screens, a button on phones.
  var menu = document.querySelector("details.menu");
  var wide = window.matchMedia("(min-width: 800px)");
  function syncMenu() { if (menu) { menu.open = wide.matches; } }
  syncMenu();
  if (wide.addEventListener) { wide.addEventListener("change", syncMenu); }

  function get(url) {
    return fetch(url, { headers: { "X-Requested-With": "fragment" }, credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.text(); });
  }

  // Live regions: <div data-live="/url" data-every="5"> is refreshed from the server.
  function live(el) {
    var every = Math.max(1, parseFloat(el.dataset.every || "5")) * 1000;
    var timer = null;
    function tick() {
      if (document.hidden || timer === null) { return; }
      get(el.dataset.live).then(function (html) {
        el.innerHTML = html;
        el.dataset.updated = String(Date.now());
        el.dispatchEvent(new CustomEvent("segmint:updated", { bubbles: true }));
        // a fragment saying it is done (e.g. a finished send) stops the refreshing
        if (el.querySelector("[data-live-done]")) { clearInterval(timer); timer = null; }
      }).catch(function () { el.classList.add("stale"); });
    }
    timer = setInterval(tick, every);
    document.addEventListener("visibilitychange", function () { if (!document.hidden) { tick(); } });
  }
  document.querySelectorAll("[data-live]").forEach(live);

  // Form previews: <form data-preview="/url" data-target="id"> posts itself as you type
  // and shows the answer (a live count, a validation message, a diff) in #id.
  document.querySelectorAll("form[data-preview]").forEach(function (form) {
    var target = document.getElementById(form.dataset.target);
    var timer = null;
    var seq = 0;
    function send() {
      var mine = ++seq;
      target.setAttribute("aria-busy", "true");
      fetch(form.dataset.preview, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fragment" },
        credentials: "same-origin"
      }).then(function (r) { return r.text(); }).then(function (html) {
        if (mine === seq) { target.innerHTML = html; target.removeAttribute("aria-busy"); }
      }).catch(function () { target.removeAttribute("aria-busy"); });
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(send, 350); });
    if (form.dataset.previewNow !== undefined) { send(); }
  });

  // Rows added to a repeating group: <template id="x"> + <button data-add="x" data-into="y">
  document.querySelectorAll("button[data-add]").forEach(function (btn) {
    btn.addEventListener("click", function () {
      var tpl = document.getElementById(btn.dataset.add);
      var into = document.getElementById(btn.dataset.into);
      var n = into.children.length;
      into.insertAdjacentHTML("beforeend", tpl.innerHTML.replace(/__i__/g, String(n)));
      var first = into.lastElementChild && into.lastElementChild.querySelector("input,select,textarea");
      if (first) { first.focus(); }
      into.closest("form").dispatchEvent(new Event("input", { bubbles: true }));
    });
  });
  document.addEventListener("click", function (e) {
    var btn = e.target.closest && e.target.closest("button[data-remove]");
    if (!btn) { return; }
    var row = btn.closest("[data-row]");
    var form = btn.closest("form");
    if (row) { row.remove(); }
    if (form) { form.dispatchEvent(new Event("input", { bubbles: true })); }
  });
})();
