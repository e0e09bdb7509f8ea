// A live chat on the reference relay: shows the connection state (connected / reconnecting
// in N s / offline), who is here, and the messages of one channel. Uses tether-web exactly as
// an app would. URL parameters: ?relay=ws://127.0.0.1:9000/ws&name=alice&room=room
import { TetherClient } from 'tether-web';

const params = new URLSearchParams(location.search);
const relay = params.get('relay') || 'ws://127.0.0.1:9000/ws';
const name = params.get('name') || `guest-${Math.floor(Math.random() * 1000)}`;
const room = params.get('room') || 'room';
const $ = (id) => document.getElementById(id);
$('room').textContent = `#${room} as ${name}`;

const client = await TetherClient.connect(relay, {
  protocol: 'tether',
  clientId: name,
  backoff: { initialMs: 500, maxMs: 10000 },
  heartbeat: { intervalMs: 10000 },
  outbox: { maxMessages: 200, ttlMs: 60000 },
});

function renderStatus() {
  const s = client.state;
  const el = $('status');
  let state = s.name;
  let text;
  if (!navigator.onLine && s.name !== 'open') {
    state = 'offline';
    text = 'offline';
  } else if (s.name === 'open') {
    text = 'connected';
  } else if (s.name === 'waiting') {
    text = `reconnecting in ${(s.retryInMs / 1000).toFixed(1)} s (attempt ${s.attempt})`;
  } else if (s.name === 'connecting') {
    text = s.attempt > 1 ? `connecting… (attempt ${s.attempt})` : 'connecting…';
  } else if (s.name === 'closed') {
    text = `closed: ${s.message}`;
  } else {
    text = s.name;
  }
  el.dataset.state = state;
  el.textContent = text;
}

function renderStats() {
  const st = client.stats;
  const rows = [
    ['round trip', st.lastRttMs == null ? '–' : `${st.lastRttMs.toFixed(1)} ms`],
    ['reconnects', st.reconnects],
    ['queued', st.outboxLength],
    ['dropped', st.droppedOverflow + st.droppedExpired + st.droppedClosed + st.droppedRejected],
    ['received', st.framesReceived],
  ];
  $('stats').replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    dd.textContent = v;
    return [dt, dd];
  }));
}

function addLine(who, text, cls) {
  const li = document.createElement('li');
  if (cls) li.className = cls;
  if (who) {
    const b = document.createElement('span');
    b.className = 'who';
    b.textContent = who;
    li.append(b);
  }
  li.append(text);
  const t = document.createElement('time');
  t.textContent = new Date().toLocaleTimeString();
  li.append(t);
  $('messages').append(li);
  li.scrollIntoView({ block: 'end' });
}

client.on('state', ({ state, previous }) => {
  renderStatus();
  if (state.name === 'open' && previous.name !== 'open' && client.stats.opens > 1) addLine('', 'reconnected', 'system');
});
client.on('reconnecting', ({ cause }) => addLine('', `disconnected: ${cause.message}`, 'system'));
client.on('message', ({ channel, data }) => {
  if (channel !== room || !data || typeof data.text !== 'string') return;
  addLine(data.from, data.text, data.from === name ? 'mine' : '');
});
client.on('presence', ({ channel, members }) => {
  if (channel !== room) return;
  $('members').replaceChildren(...members.map((m) => {
    const li = document.createElement('li');
    li.textContent = m;
    return li;
  }));
});
client.on('subscribed', ({ recovered }) => {
  if (client.stats.opens > 1 && !recovered) addLine('', 'some messages may have been missed', 'system');
});
client.on('dropped', ({ ids, reason }) => addLine('', `${ids.length} message(s) not sent: ${reason}`, 'system'));
client.on('error', (e) => console.warn('tether:', e.code, e.message));
window.addEventListener('online', renderStatus);
window.addEventListener('offline', renderStatus);

client.subscribe(room);

$('compose').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('text').value.trim();
  if (!text) return;
  client.publish(room, { from: name, text }); // queued in the outbox while disconnected
  $('text').value = '';
});

setInterval(() => { renderStatus(); renderStats(); }, 200);
renderStatus();
window.chat = client; // for poking around in the console
