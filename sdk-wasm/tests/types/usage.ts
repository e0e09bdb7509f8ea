// Compiled with `tsc --noEmit --strict` by scripts/test-web: the hand-written tether.d.ts must
// accept what the README shows and refuse what is wrong (each @ts-expect-error must fire).
import { init, TetherClient, TetherError, type TetherState, type TetherStats } from '../../js/tether.js';

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
  const answer = await client.request<{ time: number }>({ op: 'time' }, { timeout: 2000 });
  console.log(id, answer.time);
  const stats: TetherStats = client.stats;
  console.log(stats.droppedOverflow, stats.lastRttMs ?? 0, client.presence('room')?.length, client.clientId);
  client.close(1000, 'bye', { drain: 500 });

  // @ts-expect-error: no such event
  client.on('connected', () => {});
  // @ts-expect-error: reconnecting events carry delayMs, not delay
  client.on('reconnecting', ({ delay }) => console.log(delay));
  // @ts-expect-error: jitter must be one of the four strategies
  new TetherClient('ws://x', { backoff: { jitter: 'lots' } });
  // @ts-expect-error: protocol is raw or tether
  new TetherClient('ws://x', { protocol: 'json' });
  // @ts-expect-error: retryInMs exists only on the waiting state
  console.log(client.state.retryInMs);
  try {
    client.send('x');
  } catch (e) {
    if (e instanceof TetherError && e.code === 'outbox_full') console.log('full');
  }
}

void main();
