/* gogin.js: a small browser client for gogin (plain ES2017, no dependencies, no build step).
 *
 *   const client = new GoginClient({
 *     channels: ["user.alice", "all"],   // optional; named in the path (see below)
 *     history: 20,                       // first connect: the 20 newest stored messages (.b20)
 *     onmessage(msg) { ... },            // {id, channel, text, tag, time, eventid, date, raw}
 *     ongap(gap) { ... },                // {channel, text, time, tag}: messages were lost
 *     onstatus(state, info) { ... },     // connecting | open | waiting | refused | stopped
 *     onrefused(info) { ... },           // {status: 401, explain, body}: log in again
 *     onerror(doc) { ... },              // gogin's own: {"error": "publish rejected", ...}
 *     token: () => fetch("/token").then((r) => r.text()),   // signed-token locations only
 *     ontoken(info) { ... },             // {state: "accepted", exp} | {state: "refused", ...}
 *   });
 *   client.send({channel: "team.red", text: "hi"});     // client publish (WebSocket only)
 *   client.state, client.transport, client.nextRetryAt, client.positions
 *   client.retryNow(); client.close(); client.start();
 *
 * Documented in docs/clients.md.  What it does, and why:
 * - Transports: WebSocket, else EventSource, else long-polling.  One is dropped when it fails
 *   before opening while the server answers plain HTTP (a proxy that breaks upgrades...).
 * - Resume: it keeps the last position of every channel (time + tag, id, event id) and sends
 *   it on every reconnect, so nothing published meanwhile is missed.  gogin takes one position
 *   per request, shared by its channels, so the oldest one is sent and what a channel already
 *   had is dropped on arrival.  The gap signal (id -4) becomes a "gap" event.
 * - Reconnects: exponential backoff with full jitter: the n-th try waits a random time in
 *   [0, min(maxDelay, minDelay * 2^n)], so thousands of pages dropped by one restart come
 *   back spread over the whole window, not in the same second.
 * - Refusals: an HTTP 4xx (or WebSocket close 1008 with gogin's JSON reason) is not a network
 *   failure: it emits "refused" and stops; the page decides (log in, then client.start()).
 * - Signed tokens (`channels = "token"` locations): `token` is a string or a function giving
 *   one (or a Promise of one), asked for at every connect (sent as ?token=).  On a WebSocket
 *   a new one is sent ({"token": ...}) refreshMargin ms before the token's exp (read from the
 *   token without verifying it: gogin verifies), so the connection outlives its first token;
 *   an EventSource stream ends at exp and reconnects with a new token (from its position);
 *   long-polls ask for a new token before a request when the current one is near its end.
 *   A connection closed because its token ended reconnects; a token refused at connect is a
 *   refusal like any other, and so is a token function that rejects with an error whose
 *   `status` is a 4xx (the page's session is gone).
 */
(function (global) {
  "use strict";

  const KINDS = ["websocket", "eventsource", "longpoll"];
  const PROBE_MS = 3000;      // a probe still waiting after this: the server holds it, it is up
  const STABLE_MS = 5000;     // a connection that lasted this long worked: backoff starts over
  const TOKEN_LASTED_MS = 1000;   // a token connection this old ended with its token, it was
                                  // not refused at connect (gogin refuses with the 101)
  const TOKEN_EXPIRED = "Token expired.";

  // The exp of a JWT in ms, read without verifying (only to know when to ask for the next).
  function tokenExp(token) {
    try {
      const part = String(token).split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const exp = JSON.parse(atob(part + "===".slice((part.length + 3) % 4))).exp;
      return typeof exp === "number" ? exp * 1000 : null;
    } catch (e) {
      return null;
    }
  }

  // When to send the next token: margin ms before exp, never later than 3/4 of the way there.
  function refreshAt(exp, now, margin) {
    return exp - Math.min(margin, Math.max(0, exp - now) / 4);
  }

  function absolute(url, ws) {
    const base = global.location ? global.location.href : undefined;
    const u = new URL(url, base);
    if (ws) u.protocol = u.protocol === "https:" || u.protocol === "wss:" ? "wss:" : "ws:";
    return u;
  }

  function seconds(httpDate) {
    const ms = httpDate ? Date.parse(httpDate) : NaN;
    return isNaN(ms) ? null : Math.floor(ms / 1000);
  }

  // A message rendered by gogin's default template (docs/protocol.md, Templates).
  function parse(data) {
    let doc = null;
    try { doc = JSON.parse(data); } catch (e) { /* not JSON: a custom template */ }
    if (doc === null || typeof doc !== "object") {
      return { id: null, channel: null, text: String(data), tag: null, time: null,
               eventid: null, date: null, raw: data };
    }
    if (!("channel" in doc) && "error" in doc) return { error: doc, raw: data };
    const tag = doc.tag === undefined || doc.tag === "" ? null : Number(doc.tag);
    const msg = {
      id: doc.id === undefined ? null : Number(doc.id),
      channel: doc.channel === undefined ? null : doc.channel,
      text: doc.text === undefined ? "" : doc.text,
      tag: tag, time: doc.time === undefined ? null : doc.time,
      eventid: doc.eventid || null, date: null, raw: data,
    };
    if (seconds(msg.time) !== null) msg.date = new Date(msg.time);
    return msg;
  }

  // A polling answer holds every stored message after the position, each rendered by the
  // template one after the other ({..}{..}): split the top-level JSON objects apart.  A body
  // that is not JSON objects (a custom template) is one message.
  function splitMessages(body) {
    if (body.charAt(0) !== "{") return [body];
    const out = [];
    let depth = 0, start = 0, quoted = false, escaped = false;
    for (let i = 0; i < body.length; i++) {
      const ch = body.charAt(i);
      if (escaped) { escaped = false; continue; }
      if (quoted) {
        if (ch === "\\") escaped = true; else if (ch === '"') quoted = false;
        continue;
      }
      if (ch === '"') quoted = true;
      else if (ch === "{") { if (depth++ === 0) start = i; }
      else if (ch === "}" && --depth === 0) out.push(body.slice(start, i + 1));
    }
    return depth === 0 && out.length ? out : [body];
  }

  // (time, tag) order of positions; tags count per channel, so compare within a channel only
  function cmp(a, b) { return a.time !== b.time ? a.time - b.time : a.tag - b.tag; }

  // full jitter: uniform in [0, min(max, min * 2^n)]
  function retryDelay(n, minDelay, maxDelay) {
    return Math.random() * Math.min(maxDelay, minDelay * Math.pow(2, n));
  }

  // 4xx means "not you" (no session, not allowed): retrying will not change it.  408 and 429
  // are about timing, 5xx about the server: those are retried.
  function isRefusal(status) {
    return status >= 400 && status < 500 && status !== 408 && status !== 429;
  }

  class GoginClient {
    constructor(opts) {
      opts = opts || {};
      const t = opts.transports || {};
      this.urls = {
        websocket: t.websocket !== undefined ? t.websocket : (opts.url || "/subscribe/"),
        eventsource: t.eventsource !== undefined ? t.eventsource : "/subscribe-ev/",
        longpoll: t.longpoll !== undefined ? t.longpoll : "/subscribe-lp/",
      };
      const have = { websocket: typeof global.WebSocket === "function",
                     eventsource: typeof global.EventSource === "function",
                     longpoll: typeof global.fetch === "function" };
      this.kinds = (opts.order || KINDS).filter((k) => this.urls[k] && have[k]);
      this.channels = opts.channels ? opts.channels.slice() : null;
      this.history = opts.history || 0;
      this.minDelay = opts.minDelay || 3000;      // ms: the first retry's window
      this.maxDelay = opts.maxDelay || 60000;     // ms: the largest window
      this.credentials = opts.withCredentials ? "include" : "same-origin";
      this.positions = Object.assign({}, opts.positions || {});   // channel -> position
      this.tokenSource = opts.token || null;      // a string, or () => string | Promise
      this.refreshMargin = opts.refreshMargin || 30000;   // ms before exp: send a new token
      this.token = null;                          // the token of the current connection
      this.tokenExp = null;                       // its exp (ms), as gogin last confirmed it
      this.refreshes = 0;                         // tokens gogin accepted on an open socket
      this.handlers = {};
      for (const type of ["message", "gap", "status", "refused", "error", "fallback",
                          "token"]) {
        this.handlers[type] = [];
        const cb = opts["on" + type];
        if (cb) this.on(type, cb);
      }
      this.state = "idle";
      this.transport = null;
      this.nextRetryAt = null;    // ms since the epoch, while state === "waiting"
      this.lastError = null;
      this.kindIndex = 0;
      this.failures = 0;
      this.cycle = 0;             // bumped by every (re)connect and close: stale callbacks stop
      this.openedAt = null;
      this.clockAhead = null;     // ms this clock is ahead of gogin's, at most (estimated)
      this.clockSkew = opts.clockSkew || 5000;
      this.pendingGaps = {};
      this.ws = this.es = this.abort = this.timer = this.refreshTimer = null;
      if (opts.connect !== false) this.start();
    }

    on(type, fn) { this.handlers[type].push(fn); return this; }

    _emit(type, ...args) {
      for (const fn of this.handlers[type]) {
        try { fn.apply(this, args); } catch (e) { console.error(e); }
      }
    }

    _status(state, info) {
      this.state = state;
      this._emit("status", state, Object.assign({ transport: this.transport }, info || {}));
    }

    start() {
      this.stopped = false;
      this.failures = 0;
      this.kindIndex = 0;
      this._connect();
    }

    retryNow() { if (this.state === "waiting") this._connect(); }

    close() {
      this.stopped = true;
      this._teardown();
      this._status("stopped", {});
    }

    send(data) {
      const ws = this.ws;
      if (!ws || ws.readyState !== 1) return false;     // client publish needs the WebSocket
      ws.send(typeof data === "string" ? data : JSON.stringify(data));
      return true;
    }

    // -- connecting ------------------------------------------------------------------------

    _connect() {
      this._teardown();
      if (this.stopped) return;
      const kind = this.kinds[this.kindIndex];
      if (!kind) {                      // every transport failed while HTTP works: start over
        this.kindIndex = 0;
        this._schedule({ error: "no transport works" });
        return;
      }
      const cycle = this.cycle;
      this.transport = kind;
      this.pendingGaps = {};
      this._status("connecting", { attempt: this.failures + 1 });
      const open = () => {
        if (kind === "websocket") this._openWebSocket(cycle);
        else if (kind === "eventsource") this._openEventSource(cycle);
        else this._openLongPoll(cycle);
      };
      if (!this.tokenSource) {
        try { open(); } catch (e) { this._lost(cycle, { opened: false, error: String(e) }); }
        return;
      }
      this._getToken().then((token) => {
        if (cycle !== this.cycle) return;
        this.token = token;
        this.tokenExp = tokenExp(token);
        open();
      }).catch((e) => {
        // no token now (the page's token endpoint is down...): a failure like a network one;
        // an error with a 4xx `status` (not logged in...) is a refusal
        const info = { opened: false, tokenError: true, error: String(e) };
        if (e && typeof e.status === "number") {
          info.status = e.status;
          info.explain = e.explain || e.message;
        }
        this._lost(cycle, info);
      });
    }

    async _getToken() {
      const src = this.tokenSource;
      const token = await (typeof src === "function" ? src() : src);
      if (typeof token !== "string" || !token) throw new Error("the token option gave no token");
      return token;
    }

    // WebSocket: a new token over the open socket before gogin's copy ends (docs/clients.md)
    _scheduleRefresh(cycle, delay) {
      clearTimeout(this.refreshTimer);
      this.refreshTimer = null;
      if (typeof this.tokenSource !== "function" || this.tokenExp === null) return;
      const now = Date.now();
      const wait = delay !== undefined ? delay
        : Math.max(0, refreshAt(this.tokenExp, now, this.refreshMargin) - now);
      this.refreshTimer = setTimeout(() => {
        this._getToken().then((token) => {
          if (cycle !== this.cycle || !this.ws || this.ws.readyState !== 1) return;
          this.awaitingToken = true;
          this.ws.send(JSON.stringify({ token: token }));
        }).catch(() => { if (cycle === this.cycle) this._refreshRefused(cycle, {}); });
      }, wait);
    }

    _tokenAnswer(cycle, doc) {
      this.awaitingToken = false;
      if (doc.token === "accepted") {
        this.tokenExp = doc.exp * 1000;
        this.refreshes += 1;
        this._emit("token", { state: "accepted", exp: doc.exp });
        this._scheduleRefresh(cycle);
      } else {
        this._emit("token", { state: "refused", status: doc.http_status, explain: doc.explain });
        this._refreshRefused(cycle, doc);
      }
    }

    // a refused (or unavailable) new token: ask again a little later, until the old one ends
    _refreshRefused(cycle) {
      const left = this.tokenExp - Date.now();
      if (left > 0) this._scheduleRefresh(cycle, Math.min(Math.max(1000, left / 4), left));
    }

    // Long-polling: each request carries the token; a new one before it is near its end.
    async _freshToken(cycle) {
      if (typeof this.tokenSource !== "function" || this.tokenExp === null) return;
      const now = Date.now();
      if (now < refreshAt(this.tokenExp, now, this.refreshMargin)) return;
      const token = await this._getToken();
      if (cycle !== this.cycle) return;
      this.token = token;
      this.tokenExp = tokenExp(token);
    }

    _teardown() {
      this.cycle += 1;
      clearTimeout(this.timer);
      clearTimeout(this.refreshTimer);
      this.timer = this.refreshTimer = null;
      this.awaitingToken = false;
      this.nextRetryAt = null;
      if (this.ws) { try { this.ws.close(1000, "bye"); } catch (e) { /* closing anyway */ } }
      if (this.es) this.es.close();
      if (this.abort) this.abort.abort();
      this.ws = this.es = this.abort = null;
    }

    // The backoff starts over once a connection has lasted STABLE_MS (see _schedule), or when
    // a long-poll gets an answer: a server that accepts and drops at once is not "working".
    _opened(cycle) {
      if (cycle !== this.cycle) return;
      this.openedAt = Date.now();
      this._status("open", {});
    }

    // The position to resume from (query parameters), or null on a first connect.
    _resumeQuery(chans) {
      let best = null;
      const names = chans || Object.keys(this.positions);
      for (const ch of names) {
        const p = this.positions[ch];
        if (p && p.time !== null && (best === null || cmp(p, best) < 0)) best = p;
      }
      // A channel with no position had nothing while we were connected: what it may have
      // missed is newer than our last open (by gogin's clock: ours, corrected for skew).
      const unknown = chans ? chans.some((c) => !this.positions[c]) : true;
      if (this.openedAt !== null && unknown) {
        const ahead = this.clockAhead !== null ? Math.max(this.clockAhead, 0) : this.clockSkew;
        const t = Math.floor((this.openedAt - ahead) / 1000) - 1;
        if (best === null || t < best.time) best = { time: t, tag: -1 };
      }
      if (best !== null) {
        const q = { time: String(best.time) };
        if (best.tag >= 0) q.tag = String(best.tag);
        return q;
      }
      const withEvent = names.map((c) => this.positions[c]).filter((p) => p && p.eventid);
      if (withEvent.length) return { last_event_id: withEvent[withEvent.length - 1].eventid };
      return null;
    }

    _url(kind, chans, query, noHistory) {
      const u = absolute(this.urls[kind], kind === "websocket");
      if (chans) {
        // history (.bN) only without a position: a position replaces it anyway
        const suffix = this.history > 0 && !query && !noHistory ? ".b" + this.history : "";
        u.pathname = u.pathname.replace(/\/?$/, "/") + chans.map((c) => c + suffix).join("/");
      }
      for (const k in query || {}) u.searchParams.set(k, query[k]);
      if (this.token) u.searchParams.set("token", this.token);
      return u.toString();
    }

    _openWebSocket(cycle) {
      const ws = new global.WebSocket(this._url("websocket", this.channels,
                                                this._resumeQuery(this.channels)));
      this.ws = ws;
      let opened = false;
      const exp = this.tokenExp;
      ws.onopen = () => { opened = true; this._opened(cycle); this._scheduleRefresh(cycle); };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== "string") return;
        if (this.awaitingToken && ev.data.startsWith('{"token"')) {
          let doc = null;
          try { doc = JSON.parse(ev.data); } catch (e) { /* a message after all */ }
          if (doc && (doc.token === "accepted" || doc.token === "refused")) {
            this._tokenAnswer(cycle, doc);
            return;
          }
        }
        this._frame(ev.data);
      };
      ws.onclose = (ev) => {
        const info = { opened: opened, code: ev.code, reason: ev.reason };
        // gogin refuses a valid handshake with 1008 {"http_status": 403, "explain": ...}
        if (ev.code === 1008) {
          try {
            const doc = JSON.parse(ev.reason);
            if (doc && doc.http_status) {
              info.status = doc.http_status;
              info.explain = doc.explain;
            }
          } catch (e) { /* 1008 "slow consumer" & co: plain text, retried */ }
        }
        // the token we connected with ended (not refreshed in time): connect with a new one
        if (info.status === 401 && info.explain === TOKEN_EXPIRED &&
            typeof this.tokenSource === "function" && opened && exp !== null &&
            this.openedAt !== null && exp > this.openedAt &&
            Date.now() - this.openedAt >= TOKEN_LASTED_MS) {
          info.tokenEnded = true;
        }
        this._lost(cycle, info);
      };
    }

    _openEventSource(cycle) {
      const es = new global.EventSource(
        this._url("eventsource", this.channels, this._resumeQuery(this.channels)),
        { withCredentials: this.credentials === "include" });
      this.es = es;
      let opened = false;
      es.onopen = () => { opened = true; this._opened(cycle); };
      es.onmessage = (ev) => this._frame(ev.data, ev.lastEventId);
      // the browser's own reconnection would reuse the old URL (old position) at its own
      // pace: close and reconnect ourselves
      es.onerror = () => { es.close(); this._lost(cycle, { opened: opened }); };
    }

    // A long-poll answers every stored message after one position; with a position shared
    // by channels it could skip or repeat messages, so each named channel is polled on its
    // own with its own cursor.
    _openLongPoll(cycle) {
      this.abort = new AbortController();
      const groups = this.channels ? this.channels.map((c) => [c]) : [null];
      for (const g of groups) this._poll(cycle, g, this._resumeQuery(g));
      this._opened(cycle);
    }

    async _poll(cycle, chans, cursor) {
      const signal = this.abort.signal;
      while (cycle === this.cycle) {
        let r, body;
        try {
          await this._freshToken(cycle);
          if (cycle !== this.cycle) return;
          r = await global.fetch(this._url("longpoll", chans, cursor),
                                 { credentials: this.credentials, cache: "no-store", signal });
          body = await r.text();
        } catch (e) {
          this._lost(cycle, { opened: true, error: String(e) });
          return;
        }
        if (cycle !== this.cycle) return;
        if (r.status === 304) continue;                 // nothing within the location's ttl
        if (r.status !== 200) {
          this._lost(cycle, { opened: true, status: r.status, body,
                              explain: r.headers.get("X-Gogin-Explain") });
          return;
        }
        this.failures = 0;
        const t = seconds(r.headers.get("Last-Modified"));
        const etag = (r.headers.get("Etag") || "").replace(/^W\//, "").replace(/"/g, "");
        const tag = parseInt(etag, 10);
        if (t !== null) cursor = { time: String(t), tag: String(isNaN(tag) ? -1 : tag) };
        for (const part of splitMessages(body)) this._frame(part);
      }
    }

    // -- failures --------------------------------------------------------------------------

    async _lost(cycle, info) {
      if (cycle !== this.cycle || this.stopped) return;
      this._teardown();
      const kind = this.transport;
      if (!info.opened && info.status === undefined && kind !== "longpoll" &&
          !info.tokenError) {
        // WebSocket and EventSource hide the status of a refused request: ask over HTTP
        const probeCycle = this.cycle;
        Object.assign(info, await this._probe());
        if (probeCycle !== this.cycle || this.stopped) return;
        if (info.status >= 200 && info.status < 300) {
          // the server is up and lets us in, this transport does not get through
          this.kindIndex += 1;
          this._emit("fallback", { from: kind, to: this.kinds[this.kindIndex] || null });
          this._connect();
          return;
        }
      }
      this.lastError = info;
      if (isRefusal(info.status) && !info.tokenEnded) {
        this._status("refused", info);
        this._emit("refused", info);
        return;
      }
      this._schedule(info);
    }

    async _probe() {
      const kind = this.urls.eventsource ? "eventsource" : this.urls.longpoll ? "longpoll" : null;
      if (!kind || typeof global.fetch !== "function") return { network: true };
      const ctl = new AbortController();
      const timer = setTimeout(() => ctl.abort(), PROBE_MS);
      try {
        const r = await global.fetch(this._url(kind, this.channels, null, true), {
          credentials: this.credentials, cache: "no-store", signal: ctl.signal });
        const body = r.ok ? "" : await r.text();
        return { status: r.status, explain: r.headers.get("X-Gogin-Explain"), body };
      } catch (e) {
        return ctl.signal.aborted ? { status: 200, held: true } : { network: true };
      } finally {
        clearTimeout(timer);
        ctl.abort();                    // an accepted stream: we only wanted its status
      }
    }

    _schedule(info) {
      if (info.opened && this.openedAt !== null && Date.now() - this.openedAt >= STABLE_MS) {
        this.failures = 0;
      }
      const wait = retryDelay(this.failures, this.minDelay, this.maxDelay);
      this.failures += 1;
      this.nextRetryAt = Date.now() + wait;
      const cycle = this.cycle;
      this.timer = setTimeout(() => { if (cycle === this.cycle) this._connect(); }, wait);
      this._status("waiting", Object.assign({ retryIn: wait, retryAt: this.nextRetryAt }, info));
    }

    // -- messages --------------------------------------------------------------------------

    _frame(data, lastEventId) {
      const msg = parse(data);
      if (msg.error) { this._emit("error", msg.error); return; }
      if (lastEventId && !msg.eventid) msg.eventid = lastEventId;
      this._receive(msg);
    }

    _receive(msg) {
      if (msg.id === -1 || msg.id === -3) return;       // ping, long-poll timeout
      const ch = msg.channel;
      if (ch === null) { this._emit("message", msg); return; }   // custom template
      const pos = this.positions[ch];
      const here = { id: msg.id, time: seconds(msg.time), tag: msg.tag, eventid: msg.eventid };
      if (here.time !== null && here.tag === null) here.tag = -1;
      if (msg.id === -4) { this._gap(msg, here, pos); return; }
      if (msg.id === -2) {                              // channel deleted: ids start again
        delete this.positions[ch];
        this._emit("message", msg);
        return;
      }
      if (pos && here.time !== null && pos.time !== null) {
        if (cmp(here, pos) <= 0) return;                // had it: the resume position is shared
      } else if (pos && here.id !== null && pos.id !== null && here.id <= pos.id) {
        return;
      }
      const gap = this.pendingGaps[ch];
      if (gap) {
        delete this.pendingGaps[ch];
        if (!(pos && pos.id !== null && here.id === pos.id + 1)) this._emit("gap", gap);
      }
      this.positions[ch] = here;
      if (here.time !== null) {
        const ahead = Date.now() - here.time * 1000;    // >= the skew: latency, truncation
        if (this.clockAhead === null || ahead < this.clockAhead) this.clockAhead = ahead;
      }
      this._emit("message", msg);
    }

    // The gap signal is dated just before the oldest stored message that follows.  With a
    // position older than this channel's own (shared by channels) it may be about messages
    // we had: drop it then.  A tag of -1 leaves it open (the lost message could be our last
    // one): the next message's id decides.
    _gap(msg, here, pos) {
      const gap = { channel: msg.channel, text: msg.text, time: msg.time, tag: msg.tag,
                    date: msg.date, raw: msg.raw };
      if (pos && pos.time !== null && here.time !== null && cmp(pos, here) >= 0) return;
      if (pos && pos.id !== null && here.tag === -1) this.pendingGaps[msg.channel] = gap;
      else this._emit("gap", gap);
      if (here.time !== null && (!pos || pos.time === null || cmp(here, pos) > 0)) {
        this.positions[msg.channel] = { id: pos ? pos.id : null, time: here.time, tag: here.tag,
                                        eventid: pos ? pos.eventid : null };
      }
    }
  }

  GoginClient.parse = parse;
  GoginClient.retryDelay = retryDelay;
  GoginClient.tokenExp = tokenExp;
  global.GoginClient = GoginClient;
})(typeof window !== "undefined" ? window : globalThis);
