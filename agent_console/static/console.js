// The console's only script: the live feed (server-sent events) that refreshes what changed,
// canned replies, and the GSM-7 / segment counter. No inline script anywhere (CSP).
(function () {
  "use strict";
  var main = document.getElementById("main");
  var state = document.getElementById("live-state");

  // --- live feed: an event names what changed; the page asks the server again for it ---
  function refresher(el, url, after) {
    var busy = false, again = false;
    function run() {
      if (busy) { again = true; return; }
      busy = true;
      fetch(url(), { credentials: "same-origin", headers: { Accept: "text/html" } })
        .then(function (r) {
          if (r.redirected || r.status === 401) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) { if (html !== null) { el.innerHTML = html; if (after) after(); } })
        .catch(function () {})
        .then(function () { busy = false; if (again) { again = false; run(); } });
    }
    return run;
  }

  var rows = document.getElementById("rows");
  var conv = document.getElementById("conv-live");
  var phone = main && main.getAttribute("data-phone");
  var fresh = {};
  var refreshRows = rows && refresher(rows, function () { return rows.getAttribute("data-rows-url"); },
    function () {
      Array.prototype.forEach.call(rows.querySelectorAll("tr[data-phone]"), function (tr) {
        if (fresh[tr.getAttribute("data-phone")]) tr.classList.add("fresh");
      });
      fresh = {};
      document.body.setAttribute("data-refreshed", String(Date.now()));
    });
  var refreshConv = conv && refresher(conv, function () { return conv.getAttribute("data-src"); },
    function () {
      scrollTranscript();
      document.body.setAttribute("data-refreshed", String(Date.now()));
    });

  // The event carries the conversation's row as the views show it: put it in place, or take
  // it out of a view it no longer belongs to. The search view only updates rows it shows.
  var view = main && main.getAttribute("data-view");
  var me = document.body.getAttribute("data-me");
  function rowSelector(p) { return 'tr[data-phone="' + p.replace(/"/g, "") + '"]'; }
  function belongs(event) {
    if (view === "waiting") return event.status === "waiting";
    if (view === "mine") return event.status === "agent" && event.assignee === me;
    if (view === "live") return event.status !== "resolved";
    if (view === "resolved") return event.status === "resolved";
    return null;
  }
  function placeRow(event) {
    var existing = rows.querySelector(rowSelector(event.phone));
    var wanted = belongs(event);
    if (wanted === false || (wanted === null && !existing)) {
      if (existing) existing.parentNode.removeChild(existing);
    } else {
      var holder = document.createElement("tbody");
      holder.innerHTML = view === "waiting" ? event.rows.waiting : event.rows.other;
      var tr = holder.querySelector("tr");
      if (!tr) return;
      tr.classList.add("fresh");
      Array.prototype.forEach.call(rows.querySelectorAll("tr:not([data-phone])"), function (empty) {
        empty.parentNode.removeChild(empty);
      });
      if (existing) rows.replaceChild(tr, existing);
      else if (view === "waiting") rows.appendChild(tr);  // the queue: oldest first
      else rows.insertBefore(tr, rows.firstChild);
    }
    if (!rows.querySelector("tr")) {
      rows.innerHTML = '<tr><td colspan="4" class="hint"></td></tr>';
      rows.querySelector("td").textContent = rows.getAttribute("data-empty") || "";
    }
    document.body.setAttribute("data-refreshed", String(Date.now()));
  }

  function scrollTranscript() {
    var t = document.getElementById("transcript");
    if (t) t.scrollTop = t.scrollHeight;
  }
  scrollTranscript();

  if ((rows || conv) && window.EventSource) {
    var source = new EventSource("/agent/live");
    source.addEventListener("feed", function (e) {
      var event;
      try { event = JSON.parse(e.data); } catch (err) { return; }
      if (event.type === "hello") {
        if (state) { state.textContent = "live"; state.classList.add("on"); }
        document.body.setAttribute("data-live", "on");
        return;
      }
      if (event.type === "signed_out") { source.close(); window.location.reload(); return; }
      if (rows) {
        if (event.rows) placeRow(event);
        else if (event.phone && rows.querySelector(rowSelector(event.phone))) refreshRows();
      }
      if (conv && event.phone === phone) refreshConv();
    });
    source.onerror = function () {
      if (state) { state.textContent = "reconnecting..."; state.classList.remove("on"); }
      document.body.removeAttribute("data-live");
    };
  } else if (state) {
    state.textContent = "";
  }

  // --- canned replies fill the message box (the agent may edit before sending) ---
  var canned = document.getElementById("canned");
  var body = document.getElementById("reply-body");
  if (canned && body) {
    canned.addEventListener("change", function () {
      if (canned.value) { body.value = canned.value; body.dispatchEvent(new Event("input")); }
      canned.value = "";
    });
  }

  // --- GSM-7 and segment counter (the server checks the same rule: bot/text/gsm7.py) ---
  var BASIC = "@\u00a3$\u00a5\u00e8\u00e9\u00f9\u00ec\u00f2\u00c7\n\u00d8\u00f8\r\u00c5\u00e5" +
    "\u0394_\u03a6\u0393\u039b\u03a9\u03a0\u03a8\u03a3\u0398\u039e\u00c6\u00e6\u00df\u00c9" +
    " !\"#\u00a4%&'()*+,-./0123456789:;<=>?\u00a1ABCDEFGHIJKLMNOPQRSTUVWXYZ\u00c4\u00d6\u00d1\u00dc\u00a7" +
    "\u00bfabcdefghijklmnopqrstuvwxyz\u00e4\u00f6\u00f1\u00fc\u00e0";
  var EXTENDED = "\f^{}\\[~]|\u20ac";
  function count(text) {
    var septets = 0, bad = [];
    for (var i = 0; i < text.length; i++) {
      var ch = text.charAt(i);
      if (BASIC.indexOf(ch) >= 0) septets += 1;
      else if (EXTENDED.indexOf(ch) >= 0) septets += 2;
      else if (bad.indexOf(ch) < 0) bad.push(ch);
    }
    if (bad.length) {
      var units = text.length;
      return { enc: "UCS-2", chars: units, parts: units === 0 ? 0 : units <= 70 ? 1 : Math.ceil(units / 67), bad: bad };
    }
    return { enc: "GSM-7", chars: septets, parts: septets === 0 ? 0 : septets <= 160 ? 1 : Math.ceil(septets / 153), bad: [] };
  }
  var counter = document.getElementById("reply-counter");
  if (body && counter) {
    var max = parseInt(body.getAttribute("data-max-segments") || "2", 10);
    var show = function () {
      var text = body.value.replace(/\r\n/g, "\n").trim();
      var c = count(text);
      var words = c.enc + ", " + c.chars + " characters, " + c.parts + " segment" + (c.parts === 1 ? "" : "s") + " of " + max;
      if (c.bad.length) words += " (not GSM-7: " + c.bad.join(" ") + ")";
      if (c.parts > max) words += ": too long";
      counter.textContent = words;
      counter.classList.toggle("bad", c.parts > max);
    };
    body.addEventListener("input", show);
    show();
  }
})();
