// gogin-bench peer: a pub/sub server on the Node.js `ws` library with a naive send loop.
//
//   node node_ws_server.js --port 8080 [--host 127.0.0.1]
//
// * ws://HOST:PORT/sub/<channel>: subscriber; receives every message of the channel.
// * ws://HOST:PORT/pub/<channel>: publisher; each message it sends is published to the
//   channel as is (raw bytes, Text frame): for (const c of subs) c.send(data, {binary: false}).
//   Nothing is sent back to the publisher.
// * ws://HOST:PORT/pub (or /pub/): multi-channel JSON publisher, the format of gogin's
//   publisher WebSocket without ?id=: each message is {"id": "<channel>", "text": "<msg>"} or
//   an array of such objects, published in order; "id" may be a list of channels.  Each item's
//   text is UTF-8 encoded once (Buffer.from) and sent with the same naive loop to each of its
//   channels.  An invalid item is skipped and answered with {"error": ..., "index": N};
//   nothing else is sent back.
//
// One process (one event loop).  SIGTERM/SIGINT stop it cleanly.
'use strict';
const { WebSocketServer } = require('ws');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}
const host = arg('--host', '127.0.0.1');
const port = parseInt(arg('--port', ''), 10);
if (!Number.isInteger(port)) {
  console.error('usage: node node_ws_server.js --port PORT [--host HOST]');
  process.exit(2);
}

const channels = new Map(); // channel -> Set<WebSocket>
const SEND_OPTS = { binary: false, compress: false };

const wss = new WebSocketServer({
  host, port, backlog: 4096, perMessageDeflate: false, clientTracking: false,
  maxPayload: 1 << 20,
});

function isName(n) { return typeof n === 'string' && n.length > 0; }

// -> [error, channels, payload] of one JSON publish item
function parseItem(item) {
  if (item === null || typeof item !== 'object' || Array.isArray(item)) {
    return ['each message is a JSON object'];
  }
  const ids = item.id;
  const names = typeof ids === 'string' ? [ids] : ids;
  if (!Array.isArray(names) || names.length === 0 || !names.every(isName)) {
    return ['id must be a channel id or a list of them'];
  }
  const text = item.text;
  if (typeof text !== 'string' || text.length === 0) {
    return ['text must be a non-empty string'];
  }
  if (typeof text.isWellFormed === 'function' && !text.isWellFormed()) {
    return ['text is not valid Unicode']; // lone surrogate escapes
  }
  return [null, names, Buffer.from(text, 'utf8')];
}

function publishJson(ws, data) {
  let doc;
  try {
    doc = JSON.parse(data.toString('utf8'));
  } catch (e) {
    ws.send(JSON.stringify({ error: 'message is not JSON', index: 0 }));
    return;
  }
  const items = Array.isArray(doc) ? doc : [doc];
  for (let i = 0; i < items.length; i++) {
    const [err, names, payload] = parseItem(items[i]);
    if (err) { ws.send(JSON.stringify({ error: err, index: i })); continue; }
    for (const name of names) {
      const subs = channels.get(name);
      if (!subs) continue;
      for (const c of subs) c.send(payload, SEND_OPTS);
    }
  }
}

wss.on('connection', (ws, req) => {
  const path = (req.url || '').split('?', 1)[0];
  ws.on('error', () => {});
  if (path === '/pub' || path === '/pub/') {
    ws.on('message', (data) => publishJson(ws, data));
    return;
  }
  const m = /^\/(sub|pub)\/([^/]+)$/.exec(path);
  if (!m) { ws.close(1008, 'use /sub/<channel>, /pub/<channel> or /pub'); return; }
  const channel = m[2];
  if (m[1] === 'sub') {
    let subs = channels.get(channel);
    if (!subs) { subs = new Set(); channels.set(channel, subs); }
    subs.add(ws);
    ws.on('close', () => {
      subs.delete(ws);
      if (subs.size === 0 && channels.get(channel) === subs) channels.delete(channel);
    });
  } else {
    ws.on('message', (data) => {
      const subs = channels.get(channel);
      if (!subs) return;
      for (const c of subs) c.send(data, SEND_OPTS);
    });
  }
});

wss.on('listening', () => console.log(`node_ws_server listening on ${host}:${port}`));
wss.on('error', (e) => { console.error(e); process.exit(1); });

function shutdown() { process.exit(0); }
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
