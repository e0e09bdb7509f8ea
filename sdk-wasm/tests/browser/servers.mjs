// Test servers for the browser suite, all on 127.0.0.1 and all stopped by `stopAll()`:
// a static file server for the pages and the package, the reference relay (a child process),
// a TCP proxy that can cut connections, and misbehaving WebSocket/SSE servers.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { WebSocketServer } = require(path.resolve(process.env.WEB_TOOLS, 'node_modules/ws'));

const stoppers = new Set();
function track(stop) {
  stoppers.add(stop);
  return async () => {
    stoppers.delete(stop);
    await stop();
  };
}

/** Stops every server still running (called at the end of each test and at exit). */
export async function stopAll() {
  for (const stop of [...stoppers]) {
    stoppers.delete(stop);
    try {
      await stop();
    } catch (_) { /* already gone */ }
  }
}

// scripts/test-web runs the suite under `timeout`, which ends it with SIGTERM (Ctrl-C sends
// SIGINT); Node's default would exit at once and leave the relay children running. Stop
// everything first (for at most 5 s), then exit non-zero as the signal would have.
for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]]) {
  process.once(signal, () => {
    Promise.race([stopAll(), sleep(5000)]).finally(() => process.exit(code));
  });
}
// However the process exits (process.exit, an uncaught error, the signals above), no relay
// child outlives it.
const relayChildren = new Set();
process.on('exit', () => {
  for (const child of relayChildren) child.kill('SIGKILL');
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits (bounded) until `pred()` is truthy. */
export async function until(pred, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm',
  '.css': 'text/css', '.json': 'application/json', '.png': 'image/png', '.ts': 'text/plain' };

/** Serves `mounts` ({'/prefix/': dir}) on a free port. */
export async function staticServer(mounts) {
  const server = createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    for (const [prefix, dir] of Object.entries(mounts)) {
      if (!url.pathname.startsWith(prefix)) continue;
      let file = path.join(dir, decodeURIComponent(url.pathname.slice(prefix.length)));
      if (!file.startsWith(dir)) break;
      if (fs.existsSync(file) && fs.statSync(file).isDirectory()) file = path.join(file, 'index.html');
      if (!fs.existsSync(file)) break;
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
      fs.createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404).end();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  // Not tracked by stopAll: it serves every test and is stopped by the runner at the end.
  const stop = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return { url: `http://127.0.0.1:${server.address().port}`, stop };
}

/** The reference relay on `port` (a fixed port, so a test can restart it in place). */
export async function relay(port, { token, history } = {}) {
  // Where cargo put it: CARGO_TARGET_DIR when set (scripts/test-web builds it so).
  const targetDir = process.env.CARGO_TARGET_DIR ? path.resolve(process.env.REPO_ROOT, process.env.CARGO_TARGET_DIR) : path.join(process.env.REPO_ROOT, 'target');
  const bin = path.join(targetDir, 'debug/tether-relay');
  const args = ['--listen', `127.0.0.1:${port}`];
  if (token) args.push('--token', token);
  if (history) args.push('--history', String(history));
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  relayChildren.add(child);
  child.once('exit', () => relayChildren.delete(child));
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  await until(() => {
    if (child.exitCode !== null) throw new Error(`relay exited: ${log}`);
    return out.includes('listening on');
  }, 10000, 'the relay to listen');
  const exited = new Promise((r) => child.once('exit', r));
  const kill = async (signal) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      await Promise.race([exited, sleep(5000)]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  };
  const stop = track(() => kill('SIGKILL'));
  return {
    ws: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    /** Graceful: the relay closes every socket with 1012 first. */
    terminate: async () => { await kill('SIGTERM'); await stop(); },
    stop,
  };
}

/**
 * A peer that reads nothing: a WebSocket server that swallows everything, behind a proxy that
 * stops reading once the handshake is done, so every buffer on the way (the kernel's, the
 * browser's) fills up. `px.stall(false)` lets it read again, `px.cut()` cuts the connection.
 */
export async function stalledPeer() {
  const srv = await wsServer(behaviours.blackHole);
  const px = await proxy(srv.port);
  px.stall(true);
  return { srv, px };
}

/** A TCP proxy to `target` whose connections can be cut, and which can refuse new ones. */
export async function proxy(targetPort) {
  const sockets = new Set();
  let refusing = false;
  let stalled = false;
  const server = net.createServer((client) => {
    if (refusing) { client.destroy(); return; }
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = [client, upstream];
    if (stalled) upstream.once('data', () => { client.unpipe(upstream); client.pause(); });
    sockets.add(pair);
    const end = () => { sockets.delete(pair); client.destroy(); upstream.destroy(); };
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end);
    client.pipe(upstream); upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  const cut = () => { for (const [a, b] of [...sockets]) { a.destroy(); b.destroy(); } sockets.clear(); };
  const stop = track(() => new Promise((r) => { cut(); server.close(() => r()); }));
  return {
    port,
    ws: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    connections: () => sockets.size,
    cut,
    refuse: (on) => { refusing = on; },
    /** Withholds what the server sends on the current connections (acks included), or
     *  delivers again; a cut discards what was held, so the client must resend. */
    holdReplies: (on) => {
      for (const [client, upstream] of sockets) {
        if (on) { upstream.unpipe(client); upstream.pause(); } else { upstream.pipe(client); upstream.resume(); }
      }
    },
    /** Stops reading what clients send once the upstream answered the handshake (a slow
     *  consumer: the client's socket buffers fill up), or reads again. */
    stall: (on) => {
      stalled = on;
      if (!on) for (const [client, upstream] of sockets) { client.pipe(upstream); client.resume(); }
    },
    stop,
  };
}

/**
 * An SSE server: the n-th request gets `bodies[n]` (the last one again after that) as an event
 * stream, then the response ends; with another `status`, an error response with that body.
 * `urls` records each request's path and query, `cookies` its Cookie header (or null).
 */
export async function sseServer(bodies, status = 200, { hold = false } = {}) {
  const urls = [];
  const cookies = [];
  const server = createServer((req, res) => {
    urls.push(req.url);
    cookies.push(req.headers.cookie ?? null);
    // CORS that also lets a credentialed request through (the page's own origin, not `*`).
    res.writeHead(status, { 'Content-Type': 'text/event-stream', 'Access-Control-Allow-Origin': req.headers.origin ?? '*',
      'Access-Control-Allow-Credentials': 'true', 'Cache-Control': 'no-store' });
    const body = bodies[Math.min(urls.length, bodies.length) - 1];
    // `hold`: the stream stays open after its body, as a live one does, until stopped.
    if (hold) res.write(body);
    else res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const stop = track(() => new Promise((r) => {
    server.closeAllConnections();
    server.close(() => r());
  }));
  return { url: `http://127.0.0.1:${server.address().port}/events`, urls, cookies, stop };
}

/** A TCP proxy that reads what clients send slowly: one read (at most 64 KiB) every 8 ms,
 *  ~8 MB/s, a slow uplink; the server's answers go back at full speed. */
export async function slowProxy(targetPort) {
  const sockets = new Set();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = [client, upstream];
    sockets.add(pair);
    const end = () => { sockets.delete(pair); client.destroy(); upstream.destroy(); };
    client.on('error', end); upstream.on('error', end); client.on('close', end); upstream.on('close', end);
    client.on('data', (chunk) => {
      upstream.write(chunk);
      client.pause();
      setTimeout(() => client.resume(), 8);
    });
    upstream.pipe(client);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const stop = track(() => new Promise((r) => {
    for (const [a, b] of [...sockets]) { a.destroy(); b.destroy(); }
    server.close(() => r());
  }));
  return { ws: `ws://127.0.0.1:${server.address().port}/ws`, stop };
}

/** A TCP server that accepts and never answers: a WebSocket handshake to it never completes. */
export async function silentServer() {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const stop = track(() => new Promise((r) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => r());
  }));
  return { url: `ws://127.0.0.1:${server.address().port}/`, stop };
}

/**
 * A scripted WebSocket server. `behaviour(ws, req, server)` runs per connection; every
 * connection's URL, arrival time (`at`, performance.now() ms) and received frames are recorded.
 */
export async function wsServer(behaviour, port = 0) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port });
  await new Promise((r, j) => { wss.once('listening', r); wss.once('error', j); });
  const server = {
    port: wss.address().port,
    url: `ws://127.0.0.1:${wss.address().port}/ws`,
    connections: [],
    frames: [],
  };
  wss.on('connection', (ws, req) => {
    const conn = { url: req.url, frames: [], ws, at: performance.now() };
    server.connections.push(conn);
    ws.on('message', (data, binary) => {
      const frame = binary ? Buffer.from(data) : data.toString();
      conn.frames.push(frame);
      server.frames.push(frame);
    });
    behaviour(ws, req, server, conn);
  });
  server.stop = track(() => new Promise((r) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  }));
  return server;
}

export const behaviours = {
  /** Raw echo. */
  echo: (ws) => ws.on('message', (data, binary) => ws.send(data, { binary })),
  /** Accepts the handshake, then closes at once with `code`. */
  acceptThenClose: (code = 1000) => (ws) => ws.close(code, 'go away'),
  /** Accepts and never answers anything (app pings go unanswered). */
  blackHole: () => {},
};

/**
 * A hand-written WebSocket server whose first connection gets a close frame (1000) `afterMs`
 * after the handshake while its TCP connection stays open: the browser answers the close at
 * once but fires its `close` event only when the server ends the connection, or gives up on
 * it seconds later. Later connections stay open. Each connection's frames from the client
 * (unfragmented, under 126 bytes: text, or `close <code>`) are recorded in `connections`.
 */
export async function lingeringCloseServer(afterMs) {
  const { createHash } = await import('node:crypto');
  const connections = [];
  const sockets = new Set();
  const server = createServer();
  server.on('upgrade', (req, socket) => {
    const frames = [];
    connections.push(frames);
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    const accept = createHash('sha1').update(`${req.headers['sec-websocket-key']}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      for (let len = buf[1] & 0x7f; buf.length >= 6 + len && len < 126; len = buf[1] & 0x7f) {
        const mask = buf.subarray(2, 6);
        const payload = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
        frames.push((buf[0] & 0x0f) === 8 ? `close ${payload.length >= 2 ? payload.readUInt16BE(0) : ''}` : payload.toString());
        buf = buf.subarray(6 + len);
      }
    });
    if (connections.length === 1) setTimeout(() => socket.write(Buffer.from([0x88, 0x02, 0x03, 0xe8])), afterMs);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const stop = track(() => new Promise((r) => {
    for (const socket of sockets) socket.destroy();
    server.close(() => r());
  }));
  return { url: `ws://127.0.0.1:${server.address().port}/`, connections, stop };
}
