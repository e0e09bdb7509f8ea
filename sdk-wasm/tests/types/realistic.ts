import { TetherClient, TetherError, init, type TetherEventMap, type TetherEventType, type TetherState } from '../../js/tether.js';
import * as Docs from '../../js/documents.js';

export async function run(): Promise<void> {
  await init();
  const client = new TetherClient('wss://x/ws', { protocol: 'tether' });

  // 1. a named handler removed later with off()
  const onMessage = (e: TetherEventMap['message']) => console.log(e.data);
  client.on('message', onMessage);
  client.off('message', onMessage);

  // 2. a generic forwarder over every event type
  function forward<K extends TetherEventType>(type: K, to: (type: K, e: TetherEventMap[K]) => void) {
    return client.on(type, (e) => to(type, e));
  }
  forward('state', (_t, e) => console.log(e.state.name));

  // 3. state narrowing in a switch
  const describe = (s: TetherState): string => {
    switch (s.name) {
      case 'waiting': return `retry in ${s.retryInMs}`;
      case 'closed': return `${s.reason} ${s.code ?? ''} ${s.status ?? ''}`;
      case 'connecting': return `attempt ${s.attempt}`;
      default: return s.name;
    }
  };
  console.log(describe(client.state));

  // 4. errors
  try { client.send(new Uint8Array([1])); } catch (e) {
    if (e instanceof TetherError) {
      const c: string = e.code;
      console.log(c, e.details?.serverCode, e.details?.size, e.details?.reason);
    }
  }
  client.on('error', (err) => { if (err.code === 'frame_too_large') console.log(err.details?.limit); });
  try { client.send('x'); } catch (e) { if (e instanceof TetherError && e.code === 'too_large') console.log(e.details?.setting === 'outbox.max_bytes'); }
  const mine = new TetherError('invalid_argument', 'mine');
  console.log(mine.code);

  // 5. drained close with default code
  client.close(undefined, undefined, { drain: 500 });

  // 6. payload types
  client.send(new ArrayBuffer(4));
  client.send(new DataView(new ArrayBuffer(4)));
  client.send(new Blob(['x']));
  const offs: Array<() => void> = [client.on('acked', ({ id, offset }) => console.log(id, offset ?? -1))];
  offs.forEach((f) => f());
  const r = await client.request<{ time: number }>({ op: 'time' });
  console.log(r.time);

  // 7. the documents entry: a typed document with an interface
  interface Todo { title: string; done: number; [key: `item:${string}`]: { text: string } }
  const dc = await Docs.TetherClient.connect('wss://x/ws', { protocol: 'tether' });
  const todo = dc.document<Todo>('todo');
  todo.set('title', 'x');
  todo.increment('done');
  todo.set('item:1', { text: 'milk' });
  const t: string | undefined = todo.get('title');
  for (const [k, v] of todo.entries()) console.log(k, v);
  todo.on('change', ({ changes }) => changes.forEach((c) => console.log(c.key, c.value, c.deleted)));
  const handler = (e: Docs.TetherDocumentEventMap<Todo>['rejected']) => console.log(e.code);
  todo.on('rejected', handler);
  todo.off('rejected', handler);
  // documents client events still work
  dc.on('presence', ({ members }) => console.log(members.length));
  const base: TetherClient = dc; // the documents client is a TetherClient of the default entry too?
  console.log(t, base.state.name);
  const e2 = new Docs.TetherError('x', 'y');
  console.log(e2 instanceof TetherError);
}
