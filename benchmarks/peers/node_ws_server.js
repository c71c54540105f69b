// gogin-bench peer: a pub/sub server on the Node.js `ws` library with a naive send loop.
//
//   node node_ws_server.js --port 8080 [--host 127.0.0.1]
//
// * ws://HOST:PORT/sub/<channel>: subscriber; receives every message of the channel.
// * ws://HOST:PORT/pub/<channel>: publisher; each message it sends is published to the
//   channel as is (raw bytes, Text frame): for (const c of subs) c.send(data, {binary: false}).
//   Nothing is sent back to the publisher.
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

wss.on('connection', (ws, req) => {
  const path = (req.url || '').split('?', 1)[0];
  const m = /^\/(sub|pub)\/([^/]+)$/.exec(path);
  if (!m) { ws.close(1008, 'use /sub/<channel> or /pub/<channel>'); return; }
  const channel = m[2];
  ws.on('error', () => {});
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
