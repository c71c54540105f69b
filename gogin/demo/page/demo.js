/* The demo page: log in at the demo main server, subscribe through gogin, send messages.
 *
 * Knobs in the page's query (for trying things out, and for the tests):
 *   ?transports=eventsource,longpoll   which transports gogin.js may use, in order
 *   ?min_delay=300&max_delay=2000      its reconnect backoff window (ms)
 *   ?auth=token                        subscribe with signed tokens from the main server's
 *                                      /token (locations /token/, /token-ev/, /token-lp/)
 *   ?token_life=5                      ... tokens of 5 s (refreshed before they end)
 */
(function () {
  "use strict";

  const HISTORY = 30;            // stored messages per channel shown on load
  const $ = (id) => document.getElementById(id);
  const query = new URLSearchParams(location.search);
  let client = null;
  let seq = 0;                   // arrival order: ties of the second-granular message time

  function show(el, on) { el.hidden = !on; }

  function error(id, text) {
    const el = $(id);
    el.textContent = text || "";
    show(el, !!text);
  }

  // The session cookie is set by the main server for its host; cookies are per host, not per
  // port, so talk to the main server under the host name this page was opened with.
  function mainUrl(url) {
    const u = new URL(url);
    const here = location.hostname;
    if (here === "localhost" || here === "127.0.0.1" || here === "[::1]") u.hostname = here;
    return u.toString();
  }

  // -- connection status, with a countdown that moves -------------------------------------

  function renderStatus() {
    const el = $("status");
    const state = client ? client.state : "idle";
    el.dataset.state = state;
    el.dataset.transport = client && client.transport ? client.transport : "";
    let text = "not connected";
    if (state === "open") text = "live (" + client.transport + ")";
    else if (state === "connecting") text = "connecting…";
    else if (state === "waiting" && client.nextRetryAt !== null) {
      const left = Math.max(0, client.nextRetryAt - Date.now()) / 1000;
      text = "reconnecting in " + left.toFixed(1) + " s";
    } else if (state === "refused") text = "refused";
    el.textContent = text;
    show($("retry-now"), state === "waiting");
  }
  setInterval(renderStatus, 100);

  // -- the feed -----------------------------------------------------------------------------

  // newest first; history arrives one channel after the other, so place by time
  function place(li, t) {
    li.dataset.t = String(t);
    li.dataset.seq = String(++seq);
    const list = $("notifications");
    let at = list.firstChild;
    while (at && Number(at.dataset.t) > t) at = at.nextSibling;
    list.insertBefore(li, at);
    while (list.children.length > 300) list.removeChild(list.lastChild);
    $("count").textContent = String(list.querySelectorAll("li.note:not(.gap)").length);
    show($("empty"), false);
  }

  function note(kind, channel, from, text, date) {
    const li = document.createElement("li");
    li.className = "note" + (kind ? " " + kind : "");
    const meta = document.createElement("div");
    meta.className = "meta";
    const ch = document.createElement("span");
    ch.className = "channel";
    ch.textContent = channel || "?";
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from;
    const time = document.createElement("time");
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString();
    meta.append(ch, who, time);
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    li.append(meta, body);
    place(li, Math.floor(date.getTime() / 1000));
  }

  function addNotification(msg) {
    let from = null, text = msg.text;
    try {
      const inner = JSON.parse(msg.text);
      if (inner && typeof inner === "object" && typeof inner.text === "string") {
        from = inner.from || null;
        text = inner.text;
      }
    } catch (e) { /* plain text from the publisher */ }
    note(msg.id === -2 ? "deleted" : "", msg.channel, from || "server", text,
         msg.date || new Date());
  }

  function addGap(gap) {
    note("gap", gap.channel, "gogin",
         "Older notifications of " + gap.channel + " are no longer stored: some were lost.",
         gap.date || new Date());
  }

  // -- the curl hint: breaks after / ? = and at spaces, never inside a word -----------------

  function curlHint(el, url) {
    el.textContent = "";
    const parts = ("curl -d 'hello' '" + url + "'").split(/(?<=[/?=&])/);
    parts.forEach((p, i) => {
      el.append(document.createTextNode(p));
      if (i < parts.length - 1) el.append(document.createElement("wbr"));
    });
  }

  // -- session ------------------------------------------------------------------------------

  function loggedOut(cfg, users, ended) {
    show($("logged-in"), false);
    show($("send"), false);
    show($("logged-out"), true);
    show($("relogin"), !!ended);
    const form = $("login-form");
    form.action = mainUrl(cfg.login);
    form.elements.next.value = location.href;
    const box = $("user-buttons");
    box.textContent = "";
    for (const name of Object.keys(users)) {
      const b = document.createElement("button");
      b.type = "submit";
      b.name = "user";
      b.value = name;
      b.textContent = name;
      b.title = users[name].join(", ");
      box.append(b);
    }
  }

  async function whoami(cfg) {
    const r = await fetch(mainUrl(cfg.whoami), { credentials: "include", cache: "no-store" });
    return r.json();
  }

  // gogin refused us: if the main server no longer knows the session, ask to log in again
  async function refused(cfg, info) {
    let me = null;
    try { me = await whoami(cfg); } catch (e) { /* main server down: say what gogin said */ }
    if (me && !me.user) {
      loggedOut(cfg, me.users || cfg.users, true);
      return;
    }
    error("session-error", "gogin refused the subscription (" + info.status + " " +
          (info.explain || info.body || "") + ").");
  }

  function tokenMode(cfg) { return query.get("auth") === "token" && !!cfg.token; }

  function options(me, cfg) {
    const opts = {
      channels: me.channels,
      history: HISTORY,
      onmessage: addNotification,
      ongap: addGap,
      onstatus: renderStatus,
      onrefused: (info) => refused(cfg, info),
      onerror: (doc) => error("send-error", "Message rejected by the main server" +
                                            (doc.status ? " (" + doc.status + ")" : "") + "."),
    };
    if (tokenMode(cfg)) {
      // signed tokens: gogin checks them itself; gogin.js asks for one at each connect and
      // before each one ends.  A 401 from /token (session gone) is a refusal.
      opts.transports = { websocket: "/token/", eventsource: "/token-ev/",
                          longpoll: "/token-lp/" };
      const life = query.get("token_life");
      const url = mainUrl(cfg.token) + (life ? "?life=" + encodeURIComponent(life) : "");
      opts.token = async () => {
        const r = await fetch(url, { credentials: "include", cache: "no-store" });
        if (r.ok) return r.text();
        const e = new Error("no token: " + r.status);
        e.status = r.status;
        throw e;
      };
    }
    if (query.get("transports")) opts.order = query.get("transports").split(",");
    if (query.get("min_delay")) opts.minDelay = Number(query.get("min_delay"));
    if (query.get("max_delay")) opts.maxDelay = Number(query.get("max_delay"));
    return opts;
  }

  function loggedIn(cfg, me) {
    show($("logged-in"), true);
    show($("send"), !tokenMode(cfg));     // the token locations take no client messages
    $("whoami").textContent = me.user;
    const chips = $("channels");
    chips.textContent = "";
    const select = $("send-channel");
    select.textContent = "";
    for (const c of me.channels) {
      const li = document.createElement("li");
      li.textContent = c;
      chips.append(li);
      const o = document.createElement("option");
      o.value = o.textContent = c;
      select.append(o);
    }
    select.value = me.channels.includes("all") ? "all" : me.channels[0];
    const logout = $("logout-form");
    logout.action = mainUrl(cfg.logout);
    logout.elements.next.value = location.href;
    curlHint($("curl-hint"), location.origin + "/pub?id=" + me.channels[0]);

    client = new GoginClient(options(me, cfg));
    window.demoClient = client;                 // for the console (and the tests)

    $("send-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("send-text");
      const text = input.value.trim();
      if (!text) return;
      if (client.send({ channel: select.value, text: text })) {
        input.value = "";
        error("send-error", "");
      } else {
        error("send-error", client.transport === "websocket"
          ? "Not connected; try again in a moment."
          : "Sending needs the WebSocket (now on " + client.transport + ").");
      }
    });
  }

  async function main() {
    $("retry-now").addEventListener("click", () => client && client.retryNow());
    let cfg;
    try {
      cfg = await (await fetch("/_demo/config.json", { cache: "no-store" })).json();
    } catch (e) {
      error("session-error", "This page needs gogin-server --demo (no /_demo/config.json).");
      return;
    }
    let me;
    try {
      me = await whoami(cfg);
    } catch (e) {
      error("session-error", "The demo main server (" + cfg.main_server + ") does not answer.");
      return;
    }
    if (me.user) loggedIn(cfg, me);
    else loggedOut(cfg, me.users || cfg.users, false);
  }

  main();
})();
