// tether-web: the browser client of Tether. A thin, typed JavaScript face over the wasm
// driver (crate tether-wasm), which runs the sans-IO reconnection engine tether-core.
// Types: tether.d.ts. Everything that decides lives in the engine; this file only maps
// options, events, promises and errors between JavaScript and the module.
//
// Two entries are built from this file (scripts/build-web): `tether-web` as it is, on a module
// without shared documents, and `tether-web/documents`, where the import below names the
// module with them and js/document.js is appended (TetherDocument, and the client's
// document() and document events, installed onto TetherClient).
import initModule, { WasmClient } from './tether_wasm.js';

// The numbers of the module's `command(op, channel)` and `read(what, channel)`: one export
// each instead of one per command. Written here only: src/lib.rs (module `numbers`) reads
// every `NAME = number` of these two lines when it compiles, and fails to build without one.
const CONNECT = 0, SUBSCRIBE = 1, UNSUBSCRIBE = 2, OPEN_DOCUMENT = 3, CLOSE_DOCUMENT = 4,
  ONLINE = 5, OFFLINE = 6, FOREGROUND = 7, BACKGROUND = 8, ABANDON = 9;
const STATE = 0, STATS = 1, PRESENCE = 2, CLIENT_ID = 3;

let ready = null;
let initialised = false;

/**
 * Loads and instantiates this entry's WebAssembly module once. Safe to call repeatedly.
 * `module` may be a URL, Response, BufferSource or WebAssembly.Module (defaults to the file
 * next to this one: `tether_wasm_bg.wasm` for tether-web, `tether_docs_bg.wasm` for
 * tether-web/documents; each entry works only with its own, from the same build, and rejects
 * another module with a `wrong_module` TetherError, after which init may be called again).
 */
export function init(module) {
  if (!ready) {
    ready = initModule(module == null ? undefined : { module_or_path: module }).then(() => {
      initialised = true;
    }, (e) => {
      ready = null;
      throw moduleError(e);
    });
  }
  return ready;
}

// Why a module failed to load: a TetherError when the glue found it is not this entry's
// module (it throws `wrong_module:…`, see tools/pair-module.mjs); anything else (a failed
// fetch, a file that is not wasm, a LinkError) as it is.
function moduleError(e) {
  return typeof e === 'string' ? toError(e) : e;
}

/** An error with a machine-readable `code` (see `TetherErrorCode` in tether.d.ts). */
export class TetherError extends Error {
  // By name, so that an error from the other entry's copy of this class (tether-web and
  // tether-web/documents each carry one) is a TetherError too.
  static [Symbol.hasInstance](e) {
    return e instanceof Error && e.name === 'TetherError';
  }

  constructor(code, message, details) {
    super(message);
    this.name = 'TetherError';
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}

function toError(e) {
  if (e instanceof TetherError) return e;
  if (typeof e === 'string') {
    // A refusal with details (`too_large`) comes as JSON text `{code, message, details}`;
    // the others as `code:message` (no code starts with `{`).
    if (e[0] === '{') {
      const o = JSON.parse(e);
      return new TetherError(o.code, o.message, o.details);
    }
    const i = e.indexOf(':');
    return i > 0 ? new TetherError(e.slice(0, i), e.slice(i + 1)) : new TetherError('internal', e);
  }
  return new TetherError('internal', e && e.message ? e.message : String(e));
}

function call(f) {
  try {
    return f();
  } catch (e) {
    throw toError(e);
  }
}

const ms = (us) => (us == null ? us : us / 1000);

function state(s) {
  if (!s) return s;
  const out = { name: s.name };
  if (s.attempt !== undefined) out.attempt = s.attempt;
  if (s.until !== undefined) {
    out.retryAt = s.until / 1000; // performance.now() milliseconds
    out.retryInMs = Math.max(0, out.retryAt - performance.now());
  }
  if (s.reason !== undefined) {
    out.reason = s.reason;
    out.code = s.code;
    out.status = s.status;
    out.message = s.message;
  }
  return out;
}

// The `[object X]` tag: unlike `instanceof`, it also knows an ArrayBuffer from another realm
// (an iframe, a worker's transfer).
const tag = (v) => Object.prototype.toString.call(v).slice(8, -1);

// The objects JSON writes with their content: plain objects and arrays, boxed primitives (and
// `arguments`). Any other kind that reaches the replacer (one with a `toJSON`, a Date, has
// been turned into its result by then) keeps its content out of reach of JSON and would be
// written as `{}` or as its few enumerable properties: a Blob, Map or Set, an Error (message
// and stack not enumerable), URLSearchParams, FormData, a RegExp, a DOM Event or node.
const PLAIN = ['Object', 'Array', 'String', 'Number', 'Boolean', 'Arguments'];

// `data` as JSON text, for payloads and document values alike. Strings as in text: a lone
// surrogate (an emoji cut by `slice`) becomes U+FFFD instead of the `\ud83d` escape
// JSON.stringify writes, which is not valid UTF-16 and is refused. A value whose content JSON
// would lose is refused at any depth (`{ a: new Map() }`, `{ error: err }` too) rather than
// sent as `{}`.
function jsonText(data) {
  let text;
  try {
    text = JSON.stringify(data, (_, v) => {
      if (typeof v === 'string') return v.toWellFormed ? v.toWellFormed() : v;
      const kind = v !== null && typeof v === 'object' ? tag(v) : '';
      if (ArrayBuffer.isView(v) || (kind && !PLAIN.includes(kind))) {
        const hint = kind === 'Blob' || kind === 'File' ? ': read it first (await blob.arrayBuffer())' : '';
        throw new TetherError('invalid_argument', `a ${kind} cannot be sent as JSON${hint}`);
      }
      return v;
    }); // throws on a BigInt or a cycle
  } catch (e) {
    if (e instanceof TetherError) throw e;
    throw new TetherError('invalid_json', `the payload cannot be encoded as JSON: ${e.message}`);
  }
  if (text === undefined) throw new TetherError('invalid_json', 'the payload cannot be encoded as JSON');
  return text;
}

// How payloads travel: strings as text, binary as bytes (raw protocol), anything else as JSON.
function encode(data) {
  if (typeof data === 'string') return { text: data, json: false };
  const kind = data == null ? '' : tag(data);
  const view = ArrayBuffer.isView(data);
  if (view || kind === 'ArrayBuffer' || kind === 'SharedArrayBuffer') {
    try {
      return { text: '', json: false, bytes: view ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data) };
    } catch (e) { // a detached (transferred) buffer
      throw new TetherError('invalid_argument', `the binary payload cannot be read: ${e.message}`);
    }
  }
  return { text: jsonText(data), json: true };
}

// An option of `what` type, or undefined when absent: wasm-bindgen would coerce anything else
// (`ack: 'no'` read as true, `ttlMs: '100'` as 100), so a wrong type is refused here.
function typed(value, what, name) {
  if (value == null) return undefined;
  if (typeof value !== what) throw new TetherError('invalid_argument', `${name} must be a ${what}`);
  return value;
}

// A call's options object, checked against `types` (each known key's type), or {} when absent.
// A key the call does not know (a misspelling, or another call's name for it: `ttl`, or
// `timeout` on a send) is refused with the known ones rather than ignored, and a value of the
// wrong type is refused too. The one check for every method taking options. The constructor's
// options are checked in the module (convert.rs, `Reader::unknown`) in the same words.
function known(options, types) {
  if (options == null) return {};
  // An array or a Map would have its entries ignored without a word.
  if (typeof options !== 'object' || Array.isArray(options) || options instanceof Map) {
    throw new TetherError('invalid_argument', 'options must be an object');
  }
  for (const key of Object.keys(options)) {
    // A string for the keys `types` names: not for its inherited ones (`toString`...).
    if (typeof types[key] !== 'string') {
      throw new TetherError('invalid_argument', `unknown option ${key} (known: ${Object.keys(types).join(', ')})`);
    }
  }
  // A fresh object, each value read once and checked: what the call uses is what was checked,
  // also for an inherited value or a getter.
  const checked = {};
  for (const key of Object.keys(types)) checked[key] = typed(options[key], types[key], key);
  return checked;
}

// A send's options as the module's send() takes them: ack, ttlMs, timeoutMs. The acked calls
// have no `ack` option (always on).
function sendOptions(options, acked) {
  const o = known(options, acked ? { ttlMs: 'number', timeoutMs: 'number' } : { ack: 'boolean', ttlMs: 'number', timeoutMs: 'number' });
  return [acked || o.ack, o.ttlMs, o.timeoutMs];
}

// A channel name as given: `String(x)` would turn a missing one into the channel "undefined".
function channelName(channel) {
  if (typeof channel !== 'string') {
    throw new TetherError('invalid_channel', `a channel name is a string, not ${typeof channel}`);
  }
  return channel;
}

// Event handlers by type, for the client and its documents (`types`: the events they emit).
class Emitter {
  constructor(types) {
    this._handlers = new Map();
    this._types = types;
  }

  /**
   * Adds a handler; returns a function that removes it. An event that is never emitted (a
   * misspelt name) or a handler that is not a function is refused, rather than found out
   * never, or as an exception at every event.
   */
  on(type, handler) {
    this._check(type, handler);
    let set = this._handlers.get(type);
    if (!set) this._handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => this.off(type, handler);
  }

  /**
   * Removes a handler added with `on` or `once` (one never added: nothing to do). Refused as
   * by `on`: a misspelt name would remove nothing, and a missing handler matched every
   * handler added with `on`.
   */
  off(type, handler) {
    this._check(type, handler);
    const set = this._handlers.get(type);
    if (!set) return;
    set.delete(handler);
    // A `once` handler is in the set as its wrapper.
    for (const h of set) if (h._once === handler) set.delete(h);
  }

  /** Like `on`, for the next event only. */
  once(type, handler) {
    this._check(type, handler);
    const wrapper = (ev) => {
      off();
      handler(ev);
    };
    wrapper._once = handler;
    const off = this.on(type, wrapper);
    return off;
  }

  // An event name this emitter has, and a function.
  _check(type, handler) {
    if (!this._types.includes(type)) {
      throw new TetherError('invalid_argument', `unknown event ${String(type)} (known: ${this._types.join(', ')})`);
    }
    if (typeof handler !== 'function') {
      throw new TetherError('invalid_argument', `the ${type} handler must be a function, not ${typeof handler}`);
    }
  }

  _emit(type, ev) {
    const set = this._handlers.get(type);
    if (!set) return;
    for (const h of [...set]) {
      // Removed (or the client disposed) by an earlier handler of this same event: not
      // called, as an EventTarget does.
      if (!set.has(h) || this._handlers.get(type) !== set) continue;
      try {
        h(ev);
      } catch (e) {
        // A throwing handler must not stop the others, nor the driver: report it like an
        // uncaught exception in an event listener.
        queueMicrotask(() => { throw e; });
      }
    }
  }
}

/**
 * A connection that stays alive: reconnects with backoff and jitter, detects dead
 * connections with heartbeats, queues messages in a bounded outbox while disconnected,
 * resubscribes channels with resume, and reports everything as typed events.
 */
export class TetherClient extends Emitter {
  /** Loads the module if needed, then creates (and by default connects) a client. */
  static async connect(url, options = {}) {
    // Checked before `options.wasm` is read, so a bad one is the constructor's TetherError.
    if (options === null || typeof options !== 'object') {
      throw new TetherError('invalid_config', 'options must be an object');
    }
    await init(options.wasm);
    const client = new TetherClient(url, options);
    // After the caller's `await` has resumed and attached its handlers (the constructor's
    // microtask would run before it): the first state change, idle -> connecting, is theirs
    // to see.
    if (client._auto) {
      client._auto = false;
      setTimeout(() => client._autoConnect(), 0);
    }
    return client;
  }

  constructor(url, options = {}) {
    if (!initialised) {
      throw new TetherError('not_initialized',
        'tether-web is not initialised: `await init()` first, or use `await TetherClient.connect(url, options)`');
    }
    if (options === null || typeof options !== 'object') {
      throw new TetherError('invalid_config', 'options must be an object');
    }
    // `null` reads as not set, as the module reads every other option.
    const { token, wasm, autoConnect, ...rest } = options;
    if (token != null && typeof token !== 'function') {
      throw new TetherError('invalid_config', 'token must be a function returning a token or a promise of one');
    }
    if (autoConnect != null && typeof autoConnect !== 'boolean') {
      throw new TetherError('invalid_config', 'autoConnect must be a boolean');
    }
    // EventSource cannot fetch a URL with credentials (user:password@, which the native client
    // sends as Basic auth): every attempt would fail unseen. Here rather than in the module,
    // whose string searching for it cost ~290 B gzipped.
    if (/^https?:\/\/[^/?#]*@/i.test(url)) {
      throw new TetherError('invalid_config', 'url: an EventSource cannot use credentials in the URL (user:password@): send them as a token');
    }
    super(['state', 'message', 'reconnecting', 'dropped', 'acked', 'ack_timed_out', 'subscribed',
      'unsubscribed', 'presence', 'rtt', 'error']);
    this._requests = new Map();
    this._acks = new Map(); // sendAcked/publishAcked promises by message id
    this._token = token;
    let text;
    try {
      // JSON drops functions and symbols and turns NaN and Infinity into null, which would
      // read as "not set": they travel as an object naming them, which no option's type
      // accepts, so the module refuses the option by name (as text, `tokenParam: Symbol()`
      // would have been read as a string). A bigint would throw, and a cycle does.
      text = JSON.stringify(rest, (_, v) =>
        ((typeof v === 'number' && !isFinite(v)) || ['function', 'symbol', 'bigint'].includes(typeof v)
          ? { unencodable: `${typeof v} ${String(v)}` } : v));
    } catch (e) {
      throw new TetherError('invalid_config', `options cannot be read: ${e.message}`);
    }
    this._raw = call(() => new WasmClient(String(url), text, token != null, (kind, json, bytes) => this._dispatch(kind, json, bytes)));
    // Connect after the caller had the chance to attach handlers.
    this._told = false; // the app has called connect() or close() itself
    this._auto = autoConnect !== false;
    queueMicrotask(() => this._auto && this._autoConnect());
  }

  // The deferred connect of `autoConnect`, unless the app has spoken first: a `close()` right
  // after the constructor (a React StrictMode unmount) must not be undone by it.
  _autoConnect() {
    if (this._raw && !this._told) call(() => this._raw.command(CONNECT, ''));
  }

  /** Starts connecting: after `close()`, or now instead of waiting out a backoff delay. */
  connect() {
    this._told = true;
    // Not from a handler of dispose()'s own close either: what it opened would be cut.
    this._live(true);
    this._do((raw) => raw.command(CONNECT, ''));
  }

  /** Queues a message; returns its id. Strings go as text, ArrayBuffer/views as binary, anything else as JSON. */
  send(data, options) {
    const p = encode(data);
    return this._do((raw) => raw.send(undefined, p.text, p.json, p.bytes, ...sendOptions(options)));
  }

  /** Publishes to a channel (Tether protocol); acknowledged unless `{ack: false}`. Returns the message id. */
  publish(channel, data, options) {
    const p = encode(data);
    return this._do((raw) => raw.send(channelName(channel), p.text, p.json, p.bytes, ...sendOptions(options)));
  }

  /**
   * Sends an acknowledged message (Tether protocol) and resolves with its offset (`null`
   * without a channel) once the server has it. Rejects with `dropped` if it leaves the outbox
   * unacknowledged, or `ack_timed_out` after `timeoutMs` (see tether.d.ts).
   */
  sendAcked(data, options) {
    return this._acked(undefined, data, options);
  }

  /** `sendAcked` on a channel: resolves with the offset the message was stored at. */
  publishAcked(channel, data, options) {
    return this._acked(channel, data, options);
  }

  /**
   * Sends a request (Tether protocol) and resolves with the reply's payload; `{timeoutMs}`
   * overrides the client's `requestTimeoutMs`. `timeout` is its old name, still accepted
   * (deprecated); both at once are refused. `{signal}` (an `AbortSignal`) gives it up.
   */
  request(data, options) {
    return this._pending(this._requests, (raw, watch) => {
      const p = encode(data);
      const o = known(options, { timeoutMs: 'number', timeout: 'number', signal: 'object' });
      if (o.timeoutMs != null && o.timeout != null) {
        throw new TetherError('invalid_argument', 'timeout is the deprecated name of timeoutMs: give timeoutMs only');
      }
      const signal = o.signal;
      if (signal != null && !(signal instanceof AbortSignal)) {
        throw new TetherError('invalid_argument', 'signal must be an AbortSignal');
      }
      // Aborted already: not sent (see _pending).
      if (!watch(signal)?.aborted) return raw.request(p.text, p.json, p.bytes, o.timeoutMs ?? o.timeout);
    });
  }

  /** Subscribes to a channel; renewed with resume after every reconnect. */
  subscribe(channel) {
    this._do((raw) => raw.command(SUBSCRIBE, channelName(channel)));
  }

  /** Leaves a channel. */
  unsubscribe(channel) {
    this._do((raw) => raw.command(UNSUBSCRIBE, channelName(channel)));
  }

  /**
   * Shared documents are in the 'tether-web/documents' entry: there js/document.js replaces
   * this method (and the module has them). Here it says where they are.
   */
  document() {
    throw new TetherError('unsupported',
      "shared documents are in the 'tether-web/documents' entry (a larger module): import { TetherClient } from 'tether-web/documents'");
  }

  /**
   * The current members of a subscribed channel (`undefined` if not subscribed); throws
   * `needs_tether_protocol` on a raw-protocol client, as `subscribe` does.
   */
  presence(channel) {
    const members = JSON.parse(this._do((raw) => raw.read(PRESENCE, channelName(channel))));
    return members === null ? undefined : members;
  }

  /**
   * Closes and stops reconnecting. Pending messages are reported as `dropped` (reason
   * `closed`) and pending requests rejected (those written already, when the close
   * handshake ends). With `{drain: timeoutMs}` it first delivers what
   * is pending, for at most that long.
   */
  close(code, reason, options) {
    // `null` reads as not given, as for options (the glue would fail on it with no word).
    code = typed(code, 'number', 'code') ?? 1000;
    reason = typed(reason, 'string', 'reason') ?? '';
    const { drain } = known(options, { drain: 'number' });
    if (drain != null) {
      // A drained close ends with 1000: a code or reason given with it would be dropped.
      if (code !== 1000 || reason !== '') {
        throw new TetherError('invalid_argument', 'close with {drain} takes no code or reason (it closes with 1000)');
      }
      this._do((raw) => raw.close_after_drain(drain));
    } else this._do((raw) => raw.close(code, reason));
    // Only a close that took effect counts: one refused above (a bad code, a drain with a
    // code) leaves the first connect to happen as if it had not been called.
    this._told = true;
  }

  /**
   * Closes and releases the module's memory; the client cannot be used afterwards. The only
   * release: the module holds `this` through the sink callback (a JS-wasm cycle no GC sees
   * through), so `close()` alone keeps the client alive, as a client that may `connect()` again.
   */
  dispose() {
    const raw = this._raw;
    if (!raw || this._disposing) return;
    // The close's own events reach the handlers, which may read the client (its state, a
    // document's rolled-back view) as usual: it is released only once the close returns.
    // Its handshake cannot be waited for: the engine is told it is no longer run (`abandon`),
    // so it ends the close now and reports what it kept for its acks (`dropped`, `closed`).
    this._disposing = true;
    try {
      raw.close(1000, '');
      raw.command(ABANDON, '');
    } catch (_) { /* already closed */ }
    this._raw = null;
    this._handlers.clear();
    // Free after the current call returns: dispose() may run inside an event handler, while
    // the module is still using the object. Inside a handler, the close's own events (`dropped`
    // with reason `closed`, `request_failed`) are still queued behind that handler and settle
    // the promises as the engine says; only what they left is failed here.
    queueMicrotask(() => {
      this._failPending();
      raw.free();
    });
  }

  /** Tells the client the network changed (`online`/`offline` of the window or worker are already wired). */
  networkChanged(online) {
    // A string 'false' would read as online.
    if (typeof online !== 'boolean') throw new TetherError('invalid_argument', 'online must be a boolean');
    this._do((raw) => raw.command(online ? ONLINE : OFFLINE, ''));
  }

  /** Tells the client the app moved to the foreground or background (`visibilitychange` is wired). */
  setForeground(foreground) {
    if (typeof foreground !== 'boolean') {
      throw new TetherError('invalid_argument', 'foreground must be a boolean');
    }
    this._do((raw) => raw.command(foreground ? FOREGROUND : BACKGROUND, ''));
  }

  /** The connection state, e.g. `{name: 'waiting', attempt: 3, retryInMs: 1840}`. */
  get state() {
    return state(JSON.parse(this._do((raw) => raw.read(STATE, ''))));
  }

  /** The engine's counters (times in milliseconds). */
  get stats() {
    const s = JSON.parse(this._do((raw) => raw.read(STATS, '')));
    s.lastRttMs = ms(s.lastRtt);
    delete s.lastRtt;
    return s;
  }

  /** The identity this client announces in Tether mode (its presence member name). */
  get clientId() {
    return this._do((raw) => raw.read(CLIENT_ID, ''));
  }

  // The module's client; `starting` (connect()) refuses it during dispose() too.
  _live(starting) {
    if (!this._raw || (starting && this._disposing)) throw new TetherError('disposed', 'the client was disposed');
    return this._raw;
  }

  // Calls the module; its refusals (`code:message`) become TetherErrors.
  _do(f) {
    const raw = this._live();
    return call(() => f(raw));
  }

  _acked(channel, data, options) {
    return this._pending(this._acks, (raw) => {
      const p = encode(data);
      const to = channel === undefined ? undefined : channelName(channel);
      return raw.send(to, p.text, p.json, p.bytes, ...sendOptions(options, true));
    });
  }

  // A promise settled by the event that names the id `submit(raw, watch)` returns. A
  // promise-returning call rejects rather than throws: a refusal rejects it at once. A request
  // may `watch(signal)` an AbortSignal (it returns the signal): aborted already, `submit`
  // returns no id and sends nothing, and the promise rejects with the signal's reason, as
  // fetch() does; aborted later, it rejects so too, and the engine gives the request up (its
  // `request_failed` event then finds nothing left to settle here).
  _pending(waiting, submit) {
    return new Promise((resolve, reject) => {
      let id, signal;
      try {
        id = submit(this._live(), (s) => (signal = s));
      } catch (e) {
        return reject(toError(e));
      }
      if (id === undefined) return reject(signal.reason);
      if (!signal) return waiting.set(id, { resolve, reject });
      const abort = () => {
        forget();
        if (waiting.delete(id)) {
          reject(signal.reason);
          // Not once dispose() has let the module go (its pending promises fail in a moment):
          // a `disposed` thrown here would reach the page as an uncaught error.
          const raw = this._raw;
          if (raw) call(() => raw.cancel_request(id));
        }
      };
      const forget = () => signal.removeEventListener('abort', abort);
      signal.addEventListener('abort', abort);
      waiting.set(id, {
        resolve: (v) => (forget(), resolve(v)),
        reject: (e) => (forget(), reject(e)),
      });
      // Aborted by a handler the submit's own events ran (before the listener was there).
      if (signal.aborted) abort();
    });
  }

  // Settles the `waiting` promise for `id`, if any.
  _settle(waiting, id, error, value) {
    const pending = waiting.get(id);
    if (!pending) return;
    waiting.delete(id);
    if (error) pending.reject(error);
    else pending.resolve(value);
  }

  // Rejects every pending request and acked send that the close's events did not settle (the
  // client is going away), as those events would have: `closed`, and `dropped` (reason `closed`).
  _failPending() {
    for (const { reject } of this._requests.values()) reject(new TetherError('closed', 'the client was disposed'));
    for (const [id, { reject }] of this._acks) {
      reject(new TetherError('dropped', 'dropped before acknowledgement: closed', { id, reason: 'closed' }));
    }
    this._requests.clear();
    this._acks.clear();
  }

  _dispatch(kind, json, bytes) {
    const d = JSON.parse(json);
    switch (kind) {
      case 'state':
        this._emit('state', { state: state(d.to), previous: state(d.from) });
        break;
      case 'reconnecting':
        this._emit('reconnecting', { attempt: d.attempt, delayMs: ms(d.delay), cause: d.cause });
        break;
      case 'message': {
        const data = bytes !== undefined ? bytes : d.text !== undefined ? d.text : d.json;
        const ev = { data };
        if (d.channel != null) ev.channel = d.channel;
        if (d.offset != null) ev.offset = d.offset;
        if (d.event != null) ev.event = d.event; // a named SSE event's type
        if (d.lastEventId != null) ev.lastEventId = d.lastEventId; // the stream's position
        this._emit('message', ev);
        break;
      }
      case 'dropped':
        for (const id of d.ids) {
          const details = d.code === undefined ? { id, reason: d.reason } : { id, reason: d.reason, serverCode: d.code };
          this._settle(this._acks, id, new TetherError('dropped', `dropped before acknowledgement: ${d.reason}`, details));
        }
        this._emit('dropped', d);
        break;
      case 'acked':
        this._settle(this._acks, d.id, null, d.offset);
        this._emit('acked', d);
        break;
      case 'ack_timed_out':
        this._settle(this._acks, d.id, new TetherError('ack_timed_out',
          d.status === 'expired' ? 'not acknowledged in time: not sent (or re-sent) in time, dropped'
            : 'not acknowledged in time: written, still awaiting its acknowledgement', d));
        this._emit('ack_timed_out', d);
        break;
      case 'replied':
        this._settle(this._requests, d.id, null, d.payload);
        break;
      case 'request_failed':
        this._settle(this._requests, d.id, new TetherError(d.code, d.message, d.details));
        break;
      case 'rtt':
        this._emit('rtt', { rttMs: ms(d.rtt) });
        break;
      case 'error':
        this._emit('error', new TetherError(d.code, d.message, d.details));
        break;
      case 'token':
        this._fetchToken(d.request, d.attempt, d.refresh);
        break;
      // The documents entry's events (doc_*) are dispatched by js/document.js before this.
      default: // subscribed, unsubscribed, presence
        this._emit(kind, d);
    }
  }

  // The engine's Action::FetchToken: ask the app's provider, answer the engine.
  // The engine ignores an answer to any request but its current one (a late token from
  // before close() and connect() included), so every answer is passed on.
  _fetchToken(request, attempt, refresh) {
    const raw = this._raw;
    // A handler earlier in the same batch may have disposed of the client: its queued
    // request is not the app's business any more.
    if (!raw) return;
    const live = () => this._raw === raw;
    const fail = (e) => {
      // Whatever the provider threw: `String(e)` itself throws for an object without a
      // prototype, and the attempt would then wait out connectTimeoutMs unanswered.
      let message = 'the token provider failed';
      try {
        message = String(e && typeof e.message === 'string' ? e.message : e);
      } catch (_) { /* the default */ }
      if (live()) call(() => raw.token_failed(request, message));
    };
    let result;
    try {
      result = this._token({ attempt, refresh });
    } catch (e) {
      fail(e);
      return;
    }
    Promise.resolve(result).then((token) => {
      if (!live()) return;
      if (typeof token !== 'string') fail(new Error('the token provider returned ' + typeof token + ', not a string'));
      else call(() => raw.token_ready(request, token));
    }, fail);
  }
}
