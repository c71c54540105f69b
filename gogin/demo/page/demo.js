/* The demo page: log in at the demo main server, subscribe through gogin, send messages. */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  let client = null;
  let count = 0;

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

  function setStatus(state, info) {
    const el = $("status");
    el.dataset.state = state;
    if (state === "open") el.textContent = "live";
    else if (state === "connecting") el.textContent = "connecting…";
    else if (state === "closed" && info.retryIn !== undefined)
      el.textContent = "reconnecting in " + (info.retryIn / 1000).toFixed(1) + " s";
    else el.textContent = "not connected";
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
    const li = document.createElement("li");
    li.className = "note";
    if (msg.id === -2) li.classList.add("deleted");
    const meta = document.createElement("div");
    meta.className = "meta";
    const ch = document.createElement("span");
    ch.className = "channel";
    ch.textContent = msg.channel || "?";
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from ? from : "server";
    const time = document.createElement("time");
    const date = msg.date || new Date();
    time.dateTime = date.toISOString();
    time.textContent = date.toLocaleTimeString();
    meta.append(ch, who, time);
    const body = document.createElement("div");
    body.className = "text";
    body.textContent = text;
    li.append(meta, body);
    const list = $("notifications");
    list.insertBefore(li, list.firstChild);
    while (list.children.length > 200) list.removeChild(list.lastChild);
    count += 1;
    $("count").textContent = String(count);
    show($("empty"), false);
  }

  function loggedOut(cfg, users) {
    show($("logged-out"), true);
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

  function loggedIn(cfg, me) {
    show($("logged-in"), true);
    show($("send"), true);
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
    $("curl-hint").textContent =
      "curl -d 'hello' '" + location.origin + "/pub?id=" + me.channels[0] + "'";

    client = new GoginClient({
      url: "/subscribe/",
      onmessage: addNotification,
      onstatus: setStatus,
      onerror: (doc) => error("send-error", "Message rejected by the main server" +
                                           (doc.status ? " (" + doc.status + ")" : "") + "."),
    });

    $("send-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("send-text");
      const text = input.value.trim();
      if (!text) return;
      if (client.send({ channel: select.value, text: text })) {
        input.value = "";
        error("send-error", "");
      } else {
        error("send-error", "Not connected; try again in a moment.");
      }
    });
  }

  async function main() {
    let cfg;
    try {
      cfg = await (await fetch("/_demo/config.json", { cache: "no-store" })).json();
    } catch (e) {
      error("session-error", "This page needs gogin-server --demo (no /_demo/config.json).");
      return;
    }
    let me;
    try {
      const r = await fetch(mainUrl(cfg.whoami), { credentials: "include", cache: "no-store" });
      me = await r.json();
    } catch (e) {
      error("session-error", "The demo main server (" + cfg.main_server + ") does not answer.");
      return;
    }
    if (me.user) loggedIn(cfg, me);
    else loggedOut(cfg, me.users || cfg.users);
  }

  main();
})();
