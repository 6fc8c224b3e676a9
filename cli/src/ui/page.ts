/**
 * The dashboard's one page: HTML with inline CSS and JS, no build step, no external resource.
 * `#/` lists the groups; `#/group/<id>` shows one group live and its timeline. Both views subscribe
 * to the server's event stream (`/events`, `/events/<id>`) and redraw on every message.
 *
 * @since 0.1.0
 * @internal
 */

/**
 * @since 0.1.0
 * @internal
 */
export const page = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modulo-group</title>
<style>
  :root { --fg: #1d2330; --muted: #6b7385; --line: #e3e6ec; --ok: #1e9e5a; --late: #d08a00; --bad: #d0342c; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: #fafbfc; }
  header { display: flex; align-items: center; gap: 16px; padding: 10px 24px; background: #1d2330; color: #fff; }
  header a { color: #fff; text-decoration: none; font-weight: 600; }
  header .live { margin-left: auto; font-size: 12px; color: #b9c0cf; }
  header .dot { display: inline-block; width: 8px; height: 8px; border-radius: 50%; background: var(--bad); margin-right: 6px; }
  header .dot.on { background: var(--ok); }
  main { padding: 16px 24px; max-width: 1100px; }
  h1 { font-size: 18px; margin: 8px 0 4px; }
  h2 { font-size: 15px; margin: 22px 0 8px; }
  .facts { color: var(--muted); margin-bottom: 12px; }
  .facts b { color: var(--fg); }
  table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
  th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; background: #f3f5f8; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  tr.expired td { color: var(--bad); }
  tr.late td { color: var(--late); }
  .pill { display: inline-block; padding: 0 7px; border-radius: 9px; font-size: 12px; background: #eef0f4; }
  .pill.healthy, .pill.assigned { background: #dff3e8; color: #12683b; }
  .pill.late, .pill.awaiting, .pill.renegotiating { background: #fbefd5; color: #7a5200; }
  .pill.expired { background: #fbe0de; color: #9b1f19; }
  .empty { color: var(--muted); padding: 14px 0; }
  .timeline { overflow-x: auto; background: #fff; border: 1px solid var(--line); padding: 6px; }
  .timeline svg { display: block; }
  .error { color: var(--bad); }
  a { color: #2f6fdf; }
</style>
</head>
<body>
<header>
  <a href="#/">modulo-group</a>
  <span id="crumb"></span>
  <span class="live"><span id="dot" class="dot"></span><span id="live">connecting</span> · <span id="updated">-</span></span>
</header>
<main id="main"><p class="empty">Loading…</p></main>
<script>
"use strict";
(function () {
  var source = null;
  var state = { updates: 0, view: null, lastData: null, lastRenderAt: 0 };
  window.__mg = state;
  var main = document.getElementById("main");

  function el(tag, attrs, children) {
    var e = document.createElement(tag);
    if (attrs) for (var k in attrs) {
      if (k === "text") e.textContent = attrs[k];
      else if (k === "className") e.className = attrs[k];
      else e.setAttribute(k, attrs[k]);
    }
    (children || []).forEach(function (c) { if (c != null) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return e;
  }
  function ms(v) {
    if (typeof v !== "number" || !isFinite(v)) return "not a finite time";
    var a = Math.abs(v);
    if (a < 1000) return v + " ms";
    if (a < 60000) return (v / 1000).toFixed(1) + " s";
    if (a < 3600000) return Math.floor(v / 60000) + " min " + Math.round((a % 60000) / 1000) + " s";
    return (v / 3600000).toFixed(1) + " h";
  }
  function pill(text) { return el("span", { className: "pill " + text, text: text }); }
  function table(headers, rows, numeric) {
    return el("table", null, [
      el("thead", null, [el("tr", null, headers.map(function (h) { return el("th", { text: h }); }))]),
      el("tbody", null, rows)
    ]);
  }
  function td(v, num) { return el("td", num ? { className: "num" } : null, [v instanceof Node ? v : String(v)]); }

  function renderOverview(d) {
    document.getElementById("crumb").textContent = "groups";
    var box = el("div");
    box.appendChild(el("h1", { text: "Groups" }));
    if (d.installed === "none") {
      box.appendChild(el("p", { className: "empty", text: "The modulo_group schema is not installed yet: no member has joined." }));
      return box;
    }
    if (d.groups.length === 0) {
      box.appendChild(el("p", { className: "empty", text: "No groups yet." }));
      return box;
    }
    var rows = d.groups.map(function (g) {
      var link = el("a", { href: "#/group/" + encodeURIComponent(g.groupId), text: g.groupId });
      return el("tr", { "data-group": g.groupId }, [
        td(link), td(g.mode === "slots" ? "slots (" + g.slots + ")" : g.mode), td(g.epoch, true), td(g.size, true),
        td(el("span", null, [pill("healthy"), " " + g.healthy + "  ", pill("late"), " " + g.late + "  ", pill("expired"), " " + g.expired])),
        td(ms(g.changedAgoMs) + " ago")
      ]);
    });
    box.appendChild(table(["GROUP", "MODE", "EPOCH", "N", "MEMBERS", "LAST CHANGE"], rows));
    if (d.total > d.groups.length) {
      box.appendChild(el("p", { className: "empty", id: "cut", text: "Showing " + d.groups.length + " of " + d.total +
        " groups: those with live members first, then the latest changes. Open any group at #/group/<id>." }));
    }
    return box;
  }

  function renderGroup(id, d) {
    document.getElementById("crumb").textContent = "group " + id;
    var box = el("div");
    box.appendChild(el("h1", { text: id }));
    if (d.group === null) {
      box.appendChild(el("p", { className: "empty", text: d.installed === "none" ? "The modulo_group schema is not installed yet." : "No such group (nobody has joined it)." }));
      return box;
    }
    var g = d.group;
    var facts = el("div", { className: "facts", id: "facts", "data-epoch": String(g.epoch), "data-size": String(g.size) });
    facts.innerHTML = "";
    [["mode", g.mode === "slots" ? "slots (S = " + g.slots + ")" : g.mode], ["epoch", g.epoch], ["N", g.size], ["incarnation", g.incarnation], ["last change", g.changedAt === null ? "not a finite time" : new Date(g.changedAt).toISOString().slice(11, 19) + " UTC"]]
      .forEach(function (f, i) { if (i) facts.appendChild(document.createTextNode(" · ")); facts.appendChild(document.createTextNode(f[0] + " ")); facts.appendChild(el("b", { text: String(f[1]) })); });
    box.appendChild(facts);
    box.appendChild(el("h2", { text: "Members" }));
    if (g.members.length === 0) box.appendChild(el("p", { className: "empty", text: "No members." }));
    else {
      // Slots mode: each member's slot count (and those still being handed to it) and ranges, in place of its index.
      var slotsMode = g.mode === "slots";
      var rows = g.members.map(function (m) {
        var first = slotsMode
          ? [td(m.slots.held + (m.slots.pending > 0 ? " (+" + m.slots.pending + " pending)" : ""), true), td(m.slots.held === 0 ? "-" : m.slots.ranges)]
          : [td(m.index === null ? "-" : m.index, true)];
        return el("tr", { className: m.health, "data-member": m.memberId, "data-name": m.name, "data-index": m.index === null ? "" : String(m.index), "data-slots": slotsMode ? String(m.slots.held) : "" }, first.concat([
          td(m.instanceId || ""), td(m.name), td(m.host), td(m.pid, true),
          td(m.ackedEpoch, true), td(ms(m.heartbeatAgeMs) + " ago", true),
          td(m.leaseLeftMs <= 0 ? "expired " + ms(-m.leaseLeftMs) + " ago" : ms(m.leaseLeftMs), true),
          td(el("span", null, [pill(m.state), " ", pill(m.health)]))
        ]));
      });
      box.appendChild(el("table", { id: "members" }, [
        el("thead", null, [el("tr", null, (slotsMode ? ["SLOTS", "RANGES"] : ["INDEX"]).concat(["INSTANCE", "NAME", "HOST", "PID", "ACKED", "HEARTBEAT", "LEASE LEFT", "STATE"]).map(function (h) { return el("th", { text: h }); }))]),
        el("tbody", null, rows)
      ]));
    }
    if (g.waiters && g.waiters.length > 0) {
      // Static membership: processes waiting for an instance id that a live member holds (no row).
      box.appendChild(el("h2", { text: "Waiting for an instance id" }));
      box.appendChild(el("table", { id: "waiters" }, [
        el("thead", null, [el("tr", null, ["INSTANCE", "HELD BY", "WAITING", "HOST", "PID", "SINCE"].map(function (h) { return el("th", { text: h }); }))]),
        el("tbody", null, g.waiters.map(function (w) {
          return el("tr", { "data-member": w.memberId, "data-instance": w.instanceId }, [
            td(w.instanceId), td(w.heldBy === null ? "-" : w.heldBy), td(w.name), td(w.host), td(w.pid, true), td(ms(w.waitingMs), true)
          ]);
        }))
      ]));
    }
    box.appendChild(el("h2", { text: "Timeline (last hour)" }));
    if (d.timeline === null) box.appendChild(el("p", { className: "empty", text: "No change log: the schema is older than version 4 (run modulo-group migrate)." }));
    else {
      var t = el("div", { className: "timeline", id: "timeline", "data-changes": String(d.timeline.changes) });
      // The SVG is built by the server from escaped text only.
      t.innerHTML = d.timeline.svg;
      box.appendChild(t);
    }
    return box;
  }

  function route() {
    var m = /^#\\/group\\/(.+)$/.exec(location.hash);
    return m ? { kind: "group", id: decodeURIComponent(m[1]) } : { kind: "overview" };
  }

  function open() {
    if (source) source.close();
    var r = route();
    state.view = r;
    state.lastData = null;
    main.replaceChildren(el("p", { className: "empty", text: "Loading…" }));
    source = new EventSource(r.kind === "group" ? "/events/" + encodeURIComponent(r.id) : "/events");
    source.onmessage = function (ev) {
      var d = JSON.parse(ev.data);
      state.updates++;
      state.lastData = d;
      document.getElementById("dot").className = "dot on";
      document.getElementById("live").textContent = d.live === "listen" ? "live (LISTEN + 1 s poll)" : "live (1 s poll)";
      document.getElementById("updated").textContent = new Date(d.sentAt).toISOString().slice(11, 19) + " UTC";
      if (d.error) { main.replaceChildren(el("p", { className: "error", text: "database: " + d.error })); return; }
      var view = r.kind === "group" ? renderGroup(r.id, d) : renderOverview(d);
      main.replaceChildren(view);
      state.lastRenderAt = Date.now();
    };
    source.onerror = function () {
      document.getElementById("dot").className = "dot";
      document.getElementById("live").textContent = "reconnecting";
    };
  }
  window.addEventListener("hashchange", open);
  open();
})();
</script>
</body>
</html>
`
