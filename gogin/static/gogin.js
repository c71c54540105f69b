/* gogin.js: a tiny browser client for gogin over the native WebSocket.
 *
 *   const client = new GoginClient({
 *     url: "/subscribe/",                  // ws(s):// URL or a path on this host
 *     onmessage(msg) { ... },              // {id, channel, text, tag, time, eventid, date, raw}
 *     onstatus(state, info) { ... },       // "connecting" | "open" | "closed" | "stopped"
 *     onerror(doc) { ... },                // gogin's own messages, e.g. {"error": "publish rejected", "status": 403}
 *   });
 *   client.send("hello") / client.send({channel: "team.red", text: "hi"});   // client publish
 *   client.close();
 *
 * Messages are rendered by gogin's default template (PROTOCOL.md §3):
 *   {"id":N,"channel":"...","text":"...","tag":"...","time":"<HTTP date>","eventid":"..."}
 * Reconnects with exponential backoff (plus jitter) until close() is called.
 * No dependencies, no build step.
 */
(function (global) {
  "use strict";

  function wsUrl(url) {
    if (/^wss?:\/\//.test(url)) return url;
    const loc = global.location;
    const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
    if (/^https?:\/\//.test(url)) return url.replace(/^http/, "ws");
    return scheme + "//" + loc.host + (url.charAt(0) === "/" ? url : "/" + url);
  }

  function parse(data) {
    let doc;
    try {
      doc = JSON.parse(data);
    } catch (e) {
      return { id: null, channel: null, text: String(data), tag: null, time: null,
               eventid: null, date: null, raw: data };
    }
    if (doc === null || typeof doc !== "object") {
      return { id: null, channel: null, text: String(data), raw: data, date: null };
    }
    if (!("channel" in doc) && "error" in doc) return { error: doc, raw: data };
    const msg = {
      id: typeof doc.id === "number" ? doc.id : Number(doc.id),
      channel: doc.channel === undefined ? null : doc.channel,
      text: doc.text === undefined ? "" : doc.text,
      tag: doc.tag === undefined ? null : doc.tag,
      time: doc.time === undefined ? null : doc.time,
      eventid: doc.eventid || null,
      date: null,
      raw: data,
    };
    if (msg.time) {
      const d = new Date(msg.time);
      if (!isNaN(d.getTime())) msg.date = d;
    }
    return msg;
  }

  class GoginClient {
    constructor(opts) {
      opts = opts || {};
      this.url = wsUrl(opts.url || "/subscribe/");
      this.onmessage = opts.onmessage || function () {};
      this.onstatus = opts.onstatus || function () {};
      this.onerror = opts.onerror || function () {};
      this.minDelay = opts.minDelay || 500;        // ms
      this.maxDelay = opts.maxDelay || 15000;      // ms
      this.reconnect = opts.reconnect !== false;
      this.delay = this.minDelay;
      this.ws = null;
      this.timer = null;
      this.stopped = false;
      this.attempts = 0;
      this.state = "idle";
      if (opts.connect !== false) this.connect();
    }

    _status(state, info) {
      this.state = state;
      try { this.onstatus(state, info || {}); } catch (e) { console.error(e); }
    }

    connect() {
      if (this.stopped) return;
      clearTimeout(this.timer);
      this.timer = null;
      this.attempts += 1;
      this._status("connecting", { attempt: this.attempts });
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (e) {
        this._schedule({ error: String(e) });
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        this.delay = this.minDelay;
        this.attempts = 0;
        this._status("open", {});
      };
      ws.onmessage = (ev) => {
        if (typeof ev.data !== "string") return;      // binary messages: not for this client
        const msg = parse(ev.data);
        if (msg.error) {
          try { this.onerror(msg.error); } catch (e) { console.error(e); }
          return;
        }
        if (msg.id === -1) return;                    // ping
        try { this.onmessage(msg); } catch (e) { console.error(e); }
      };
      ws.onclose = (ev) => {
        if (this.ws !== ws) return;
        this.ws = null;
        if (this.stopped) {
          this._status("stopped", { code: ev.code, reason: ev.reason });
          return;
        }
        this._schedule({ code: ev.code, reason: ev.reason });
      };
    }

    _schedule(info) {
      if (!this.reconnect || this.stopped) {
        this._status("closed", info);
        return;
      }
      const wait = Math.round(this.delay * (0.75 + Math.random() * 0.5));
      this.delay = Math.min(this.delay * 2, this.maxDelay);
      this._status("closed", Object.assign({ retryIn: wait }, info));
      this.timer = setTimeout(() => this.connect(), wait);
    }

    send(data) {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
      this.ws.send(typeof data === "string" ? data : JSON.stringify(data));
      return true;
    }

    close() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) this.ws.close(1000, "bye");
      else this._status("stopped", {});
    }
  }

  GoginClient.parse = parse;
  global.GoginClient = GoginClient;
})(typeof window !== "undefined" ? window : globalThis);
