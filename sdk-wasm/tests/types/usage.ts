// Compiled with `tsc --noEmit --strict` by scripts/test-web: the hand-written tether.d.ts must
// accept what the README shows and refuse what is wrong (each @ts-expect-error must fire).
import {
  init, TetherClient, TetherError, type KeyChange, type TetherDocument, type TetherState, type TetherStats, type Unacked,
} from '../../js/documents.js';
import { TetherClient as PlainClient } from '../../js/tether.js';

async function main(): Promise<void> {
  await init();
  const client = await TetherClient.connect('wss://example.com/ws', {
    protocol: 'tether',
    backoff: { initialMs: 500, maxMs: 20000, jitter: 'full', maxAttempts: 10 },
    heartbeat: { mode: 'auto', intervalMs: 15000, maxMissed: 2 },
    outbox: { maxMessages: 500, overflow: 'drop-oldest', ttlMs: 60000 },
    token: async ({ attempt, refresh }) => `t-${attempt}-${refresh}`,
    tokenPlacement: 'first-message',
    backpressure: { highWaterBytes: 1 << 20 },
    closePolicy: { codes: [{ from: 4500, to: 4599, action: 'stop' }, { from: 4100, action: 'reauth' }], serviceRestartWindowMs: 10000 },
  });

  const off = client.on('state', ({ state, previous }) => {
    const s: TetherState = state;
    if (s.name === 'waiting') console.log(s.retryInMs.toFixed(0), s.attempt, previous.name);
    if (s.name === 'closed') console.log(s.reason, s.code, s.message);
  });
  off();
  client.on('message', ({ data, channel, offset }) => console.log(data, channel?.length, offset));
  client.on('reconnecting', ({ attempt, delayMs, cause }) => console.log(attempt, delayMs, cause.kind, cause.code));
  client.on('dropped', ({ ids, reason }) => console.log(ids.length, reason === 'overflow'));
  client.on('presence', ({ members, joined, left }) => console.log(members, joined, left));
  client.on('rtt', ({ rttMs }) => console.log(rttMs.toFixed(1)));
  client.on('error', (e) => console.log(e.code, e.message, e instanceof TetherError));
  client.once('acked', ({ id, offset }) => console.log(id, offset));
  client.on('subscribed', ({ channel, recovered }) => console.log(channel, recovered));

  client.subscribe('room');
  const id: number = client.publish('room', { text: 'hi' }, { ack: true, ttlMs: 1000 });
  client.send(new Uint8Array([1, 2]));
  const answer = await client.request<{ time: number }>({ op: 'time' }, { timeoutMs: 2000 });
  await client.request('old name', { timeout: 2000 }); // deprecated alias of timeoutMs, still typed
  const search = new AbortController();
  await client.request('search', { signal: search.signal, timeoutMs: 2000 });
  // @ts-expect-error a signal is an AbortSignal, not its controller
  await client.request('search', { signal: search });
  // @ts-expect-error timeoutMs or its deprecated alias timeout, not both
  await client.request('both', { timeoutMs: 2000, timeout: 2000 });
  // @ts-expect-error per-call option names end in Ms: `ttl` is not one
  client.publish('room', 1, { ttl: 5 });
  // @ts-expect-error `timeout` is only request()'s deprecated name; publishAcked takes timeoutMs
  await client.publishAcked('room', 1, { timeout: 100 });
  console.log(id, answer.time);
  client.on('ack_timed_out', ({ id, status }) => console.log(id, status === 'awaiting_ack'));
  try {
    const offset: number | null = await client.publishAcked('room', 'kept?', { timeoutMs: 5000, ttlMs: 1000 });
    const plain: number | null = await client.sendAcked({ n: 1 });
    // @ts-expect-error an acked send is always acknowledged: no `ack` option
    await client.sendAcked('x', { ack: false });
    console.log(offset, plain);
  } catch (e) {
    if (e instanceof TetherError && e.code === 'ack_timed_out') {
      const status: Unacked | undefined = e.details?.status;
      console.log(e.details?.id, status);
    }
  }
  const stats: TetherStats = client.stats;
  console.log(stats.droppedOverflow, stats.lastRttMs ?? 0, client.presence('room')?.length, client.clientId);
  client.close(1000, 'bye', { drain: 500 });

  // Documents: untyped, and with a shape (template-literal keys for collections).
  const notes = client.document('notes');
  notes.set('anything', { nested: [1, 2] });
  console.log(notes.get('anything'), notes.has('x'), notes.entries().length, notes.toJSON(), notes.confirmed());
  type Item = { text: string; done: boolean };
  type Todo = { [key: `item:${string}`]: Item | null; completed: number };
  const todo: TetherDocument<Todo> = client.document<Todo>('todo');
  const item: Item | null | undefined = todo.get('item:1');
  const added: number = todo.insert('item:2', { text: 'milk', done: false });
  todo.increment('completed');
  todo.increment('completed', -1);
  todo.delete('item:1');
  todo.change([
    { op: 'insert', key: 'item:3', value: { text: 'eggs', done: true } },
    { op: 'delete', key: 'item:2' },
    { op: 'increment', key: 'completed', by: 1 },
  ]);
  todo.on('change', ({ origin, changes }) => {
    const first: KeyChange<Todo> | undefined = changes[0];
    if (origin === 'local_pending' || origin === 'rolled_back') console.log(first?.key, first?.deleted, first?.overwroteLocal);
  });
  todo.once('rejected', ({ change, code }) => console.log(change === added, code === 'conflict'));
  todo.on('resynced', ({ version }) => console.log(version, todo.epoch, todo.version ?? 0, todo.pending, todo.isPending('completed')));
  todo.close();
  try {
    todo.insert('item:2', null);
  } catch (e) {
    if (e instanceof TetherError && (e.code === 'conflict' || e.code === 'not_open')) console.log(item);
  }
  // @ts-expect-error: the counter holds a number
  todo.set('completed', 'three');
  // @ts-expect-error: not a key of the shape
  todo.set('title', 'x');
  // @ts-expect-error: no such operation
  todo.change([{ op: 'append', key: 'completed', value: 1 }]);
  // @ts-expect-error: increments need a number
  todo.increment('completed', '1');
  // @ts-expect-error: documents emit change, rejected and resynced
  todo.on('changed', () => {});
  // @ts-expect-error: 'change' events carry origin and changes, not value
  todo.on('change', ({ value }) => console.log(value));

  // The default entry has no documents: its client says so at compile time.
  const plain = await PlainClient.connect('wss://example.com/ws');
  // @ts-expect-error: documents are in 'tether-web/documents'
  plain.document('notes');

  // @ts-expect-error: no such event
  client.on('connected', () => {});
  // @ts-expect-error: reconnecting events carry delayMs, not delay
  client.on('reconnecting', ({ delay }) => console.log(delay));
  // @ts-expect-error: jitter must be one of the four strategies
  new TetherClient('ws://x', { backoff: { jitter: 'lots' } });
  // @ts-expect-error: a close-policy action is retry, reauth or stop
  new TetherClient('ws://x', { closePolicy: { codes: [{ from: 4500, action: 'terminal' }] } });
  // @ts-expect-error: protocol is raw or tether
  new TetherClient('ws://x', { protocol: 'json' });
  new TetherClient('https://x/events', { sseEvents: ['update', 'delete'] });
  // @ts-expect-error: sseEvents is a list of event names
  new TetherClient('https://x/events', { sseEvents: 'update' });
  new TetherClient('https://x/events', { withCredentials: true });
  // @ts-expect-error: withCredentials is a boolean
  new TetherClient('https://x/events', { withCredentials: 'include' });
  // @ts-expect-error: retryInMs exists only on the waiting state
  console.log(client.state.retryInMs);
  try {
    client.send('x');
  } catch (e) {
    if (e instanceof TetherError && e.code === 'outbox_full') console.log('full');
  }
}

void main();
