// A live chat and a shared todo list on the reference relay: shows the connection state
// (connected / reconnecting in N s / offline), who is here, the messages of one channel, and
// a list everyone edits at once (a tether document). Uses tether-web exactly as an app would.
// URL parameters: ?relay=ws://127.0.0.1:9000/ws&name=alice&room=room&list=todo
import { TetherClient } from 'tether-web/documents';

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
  // Chat messages expire (below); list changes wait as long as it takes.
  outbox: { maxMessages: 500 },
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
  return li;
}

// Your own lines, shown at once and marked as the relay acknowledges them. Each carries a key
// of this page's own, so its echo from the channel is not shown a second time.
const myKeys = new Set();
let sent = 0;
// Lines whose wait timed out after they were written: a late `acked` event still confirms them.
const unconfirmed = new Map(); // message id -> line

function markDelivery(li, state, title) {
  li.dataset.delivery = state;
  const mark = li.querySelector('.delivery') || li.appendChild(document.createElement('span'));
  mark.className = 'delivery';
  mark.textContent = { sending: 'sending…', delivered: '✓', unconfirmed: 'unconfirmed', failed: 'not delivered' }[state];
  mark.title = title;
}

client.on('acked', ({ id, offset }) => {
  const li = unconfirmed.get(id);
  if (!li) return;
  unconfirmed.delete(id);
  markDelivery(li, 'delivered', `stored at offset ${offset}, late`);
});

client.on('state', ({ state, previous }) => {
  renderStatus();
  if (state.name === 'open' && previous.name !== 'open' && client.stats.opens > 1) addLine('', 'reconnected', 'system');
});
client.on('reconnecting', ({ cause }) => addLine('', `disconnected: ${cause.message}`, 'system'));
client.on('message', ({ channel, data }) => {
  if (channel !== room || !data || typeof data.text !== 'string') return;
  if (data.key && myKeys.has(data.key)) return; // already shown when sent
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
  // Queued in the outbox while disconnected, and re-sent after a reconnect until the relay
  // acknowledges it; a chat line not delivered within a minute is not worth sending late.
  const key = `${name}:${Date.now()}:${++sent}`;
  const li = addLine(name, text, 'mine');
  myKeys.add(key);
  markDelivery(li, 'sending', 'waiting for the relay');
  client.publishAcked(room, { from: name, text, key }, { timeoutMs: 60000 }).then(
    (offset) => markDelivery(li, 'delivered', `stored at offset ${offset}`),
    (e) => {
      if (e.code === 'ack_timed_out' && e.details.status === 'awaiting_ack') {
        // Written, not confirmed yet: the relay may still have it (its `acked` event says).
        unconfirmed.set(e.details.id, li);
        markDelivery(li, 'unconfirmed', 'sent; the relay has not confirmed it yet');
      } else markDelivery(li, 'failed', e.message);
    },
  );
  $('text').value = '';
});

// ---- the shared list: one tether document on the relay ----------------------------------
//
// The document is a JSON map of keys to values, the same for everyone on ?list=:
//   "item:<id>#<gen>"  {text, by, at, done}: one live key per item; null once deleted
//   "completed"        how many items are done, kept by increments (they sum exactly)
//   "restored"         {by, items}: who put the list back after a relay restart
// Ticking or deleting an item inserts its next generation's key and deletes the current one,
// in one atomic change with the counter's increment. Two people acting on the same item at
// once both insert the same key: the relay applies the first and rejects the second
// (`conflict`), which rolls back everywhere, so the counter never counts an item twice.
// Every change shows here at once; until the relay confirms it, the item is drawn as pending.

const list = client.document(params.get('list') || 'todo');
const ITEM = /^item:([^#]+)#(\d+)$/;
let shown = { items: [], ids: new Set() }; // what was last drawn, i.e. the view before an event
let epoch = null; // the relay epoch the list was last synced in
const mine = new Map(); // change id -> what it did, to explain a rejection

function readList() {
  const items = [];
  const ids = new Set(); // every item id with a key, deleted ones (null) included
  for (const [key, value] of list.entries()) {
    const m = ITEM.exec(key);
    if (!m) continue;
    ids.add(m[1]);
    if (value) items.push({ ...value, key, id: m[1], gen: Number(m[2]), pending: list.isPending(key) });
  }
  items.sort((a, b) => a.at - b.at || (a.id < b.id ? -1 : 1));
  return { items, ids };
}

function renderList() {
  shown = readList();
  const { items } = shown;
  $('todo-items').replaceChildren(...items.map((it) => {
    const li = document.createElement('li');
    li.dataset.key = it.key;
    li.className = (it.done ? 'done ' : '') + (it.pending ? 'pending' : '');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = it.done;
    box.setAttribute('aria-label', `done: ${it.text}`);
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = it.text;
    const by = document.createElement('span');
    by.className = 'by';
    by.textContent = it.by;
    const del = document.createElement('button');
    del.className = 'del';
    del.type = 'button';
    del.textContent = '×';
    del.setAttribute('aria-label', `delete ${it.text}`);
    li.append(box, text, by);
    if (it.pending) {
      const p = document.createElement('span');
      p.className = 'saving';
      p.textContent = 'not saved yet';
      li.append(p);
    }
    li.append(del);
    return li;
  }));
  const completed = list.get('completed') || 0;
  $('todo-count').textContent = `${completed} of ${items.length} done`;
  const pending = list.pending;
  $('todo-pending').textContent = pending === 0 ? ''
    : `${pending} change${pending > 1 ? 's' : ''} not confirmed yet${client.state.name === 'open' ? '' : ' (sent when the relay is back)'}`;
}

function note(text) {
  const el = $('todo-note');
  el.textContent = text;
  el.hidden = !text;
}

// Applies `ops` atomically and remembers what it was for; a change the list already refuses
// (someone changed that item a moment ago) is explained instead.
function change(ops, what) {
  try {
    mine.set(list.change(ops), what);
    if (mine.size > 100) mine.delete(mine.keys().next().value);
  } catch (e) {
    if (e.code === 'conflict') note(`Not done: someone changed the list just before you (${what}).`);
    else note(`Not done: ${e.message}`);
  }
}

$('todo-add').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = $('todo-text').value.trim();
  if (!text) return;
  const id = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
  change([{ op: 'insert', key: `item:${id}#0`, value: { text, by: name, at: Date.now(), done: false } }], `adding “${text}”`);
  $('todo-text').value = '';
});

$('todo-items').addEventListener('click', (ev) => {
  const li = ev.target.closest('li');
  const it = li && shown.items.find((i) => i.key === li.dataset.key);
  if (!it) return;
  const next = `item:${it.id}#${it.gen + 1}`;
  if (ev.target.matches('input[type=checkbox]')) {
    const done = !it.done;
    change([
      { op: 'insert', key: next, value: { text: it.text, by: it.by, at: it.at, done } },
      { op: 'delete', key: it.key },
      { op: 'increment', key: 'completed', by: done ? 1 : -1 },
    ], `${done ? 'ticking' : 'unticking'} “${it.text}”`);
  } else if (ev.target.matches('.del')) {
    const ops = [{ op: 'insert', key: next, value: null }, { op: 'delete', key: it.key }];
    if (it.done) ops.push({ op: 'increment', key: 'completed', by: -1 });
    change(ops, `deleting “${it.text}”`);
  }
});

list.on('change', ({ origin, changes }) => {
  const restored = origin === 'remote' && changes.find((c) => c.key === 'restored' && c.value);
  if (restored && restored.value.by !== name) {
    note(`The relay restarted and lost the list; ${restored.value.by}’s page put back ${restored.value.items} item(s).`);
  }
  renderList();
});

list.on('rejected', ({ change: id, code }) => {
  const what = mine.get(id) || 'a change';
  mine.delete(id);
  if (what === RESTORE) {
    // Another page put the list back first (said on 'change'), or someone's replayed change
    // took an item first: then try again without it.
    if (code === 'conflict' && !list.has('restored') && restoreTries++ < 3) putBack(lastEpochItems);
    return;
  }
  note(code === 'conflict'
    ? `Undone: someone else changed that item first (${what}).`
    : `Undone: ${what} could not be sent (${code}).`);
});

// A snapshot from a relay in a new epoch means it restarted and lost the list (it keeps
// documents in memory). The engine has already replayed our unconfirmed changes; this page
// then puts back the items it still had, once per restart: the insert of "restored" lets only
// the first page that tries succeed (the others get `conflict` and see its items arrive).
const RESTORE = 'putting the list back';
let lastEpochItems = [];
let restoreTries = 0;
list.on('resynced', () => {
  const before = shown.items;
  const restarted = epoch !== null && list.epoch !== epoch;
  epoch = list.epoch;
  if (restarted && (before.length || list.pending)) {
    note('The relay restarted and lost the list: it keeps documents in memory only. Changes not confirmed yet were sent again.');
    lastEpochItems = before;
    restoreTries = 0;
    if (!list.has('restored')) putBack(before);
  }
  renderList();
});

// Items come back at their next generation: a replayed change from another page to the same
// item (made on the same generation) then conflicts with the restore, and one of the two wins
// whole, so no item ever has two live keys and the counter stays exact.
function putBack(previous) {
  const { items, ids } = readList();
  const back = previous.filter((it) => !ids.has(it.id)); // not changed or deleted meanwhile
  const done = items.concat(back).filter((it) => it.done).length;
  const ops = [{ op: 'insert', key: 'restored', value: { by: name, items: back.length } }];
  for (const it of back) {
    ops.push({ op: 'insert', key: `item:${it.id}#${it.gen + 1}`, value: { text: it.text, by: it.by, at: it.at, done: it.done } });
  }
  const fix = done - (list.get('completed') || 0); // replayed changes may have moved the counter
  if (fix) ops.push({ op: 'increment', key: 'completed', by: fix });
  if (ops.length === 1) return; // nothing to put back, nothing to correct
  note(`The relay restarted and lost the list (it keeps documents in memory only); this page put back the ${back.length} item(s) it still had.`);
  change(ops, RESTORE);
}

client.on('state', renderList);

setInterval(() => { renderStatus(); renderStats(); }, 200);
renderStatus();
renderList();
window.chat = client; // for poking around in the console
window.list = list;
