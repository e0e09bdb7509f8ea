// Type declarations for tether-web (hand-written; the module's own bindings are internal).
// Shared documents are in the 'tether-web/documents' entry (documents.d.ts).

/**
 * Loads and instantiates this entry's WebAssembly module once; safe to call repeatedly. The
 * default is the file next to the entry; a module given here must be that entry's own:
 * `tether_wasm_bg.wasm` for 'tether-web', `tether_docs_bg.wasm` for 'tether-web/documents'.
 * Another module (the other entry's, or another build's) rejects with a `TetherError` with code
 * `wrong_module` (one whose imports differ too, with the browser's `WebAssembly.LinkError`),
 * and `init` can be called again. Each entry has its own `init`: take it from the entry your
 * `TetherClient` comes from.
 */
export function init(
  module?: string | URL | Request | Response | BufferSource | WebAssembly.Module,
): Promise<void>;

/** Machine-readable error codes carried by `TetherError.code`. */
export type TetherErrorCode =
  // init() and TetherClient.connect() rejections: another entry's or build's module
  | 'wrong_module'
  // thrown by methods
  | 'not_initialized' | 'disposed' | 'invalid_config' | 'invalid_json' | 'busy'
  | 'too_large' | 'outbox_full' | 'closed' | 'closing' | 'needs_tether_protocol'
  | 'binary_in_tether_mode' | 'invalid_channel' | 'invalid_close_code' | 'invalid_argument'
  | 'invalid_options' | 'receive_only'
  // request() rejections (besides 'closed' and 'outbox_full' above)
  | 'timeout' | 'connection_lost' | 'rejected'
  // sendAcked()/publishAcked() rejections (besides the refusals above)
  | 'dropped' | 'ack_timed_out'
  // documents (the 'tether-web/documents' entry; 'unsupported' from client.document() in the
  // default entry): thrown by client.document() and TetherDocument methods
  | 'unsupported' | 'not_open' | 'empty_change' | 'invalid_op' | 'conflict' | 'type_mismatch'
  | 'out_of_range' | 'too_deep'
  // 'error' events (problems the client already handled)
  | 'frame_too_large' | 'decode' | 'unexpected_frame' | 'server' | 'transport' | 'token'
  | 'sse_line_too_long'
  | (string & {});

/** Every failure is a `TetherError` with a `code` to branch on (`instanceof` works across the two entries). */
export class TetherError extends Error {
  readonly name: 'TetherError';
  readonly code: TetherErrorCode;
  /**
   * Machine-readable specifics, when there are any: the server's own error code for a
   * `server` error event or a `rejected` request, the sizes for `frame_too_large`, the sizes
   * and the setting for `too_large`.
   */
  readonly details?: TetherErrorDetails;
  constructor(code: TetherErrorCode, message: string, details?: TetherErrorDetails);
}

export interface TetherErrorDetails {
  /** The code in the server's `error` message (`server` errors, `rejected` requests, a
   *  `dropped` rejection with reason `rejected`). */
  serverCode?: string;
  /** `frame_too_large`, `sse_line_too_long`: the inbound size and the limit, in bytes;
   *  `too_large`: the refused message's size and the limit it exceeds. */
  size?: number;
  limit?: number;
  /**
   * `too_large`: the setting whose limit the message exceeds, named as `invalid_config`
   * names it: `'max_message_bytes'` (the `maxMessageBytes` option), or `'outbox.max_bytes'`
   * (`outbox.maxBytes`, when that is the smaller).
   */
  setting?: 'max_message_bytes' | 'outbox.max_bytes';
  /** `dropped`, `ack_timed_out`: the message id `send`/`publish` events name it by. */
  id?: number;
  /** `dropped`: why it left the outbox. */
  reason?: DropReason;
  /** `ack_timed_out`: whether it was dropped unsent or still awaits its ack. */
  status?: Unacked;
}

/**
 * What became of an acknowledged message whose `timeoutMs` passed: `'expired'`, never written
 * (or not re-sent after a reconnect), dropped, and a `dropped` event follows at once;
 * `'awaiting_ack'`, written and kept until its `acked` or `dropped` event (a `dropped` then
 * means its ack was never seen: the server may have it).
 */
export type Unacked = 'expired' | 'awaiting_ack';

export type StateName = 'idle' | 'connecting' | 'open' | 'closing' | 'waiting' | 'closed';

/** Why a client reached `closed`. */
export type CloseReasonName = 'app' | 'gave_up' | 'refused' | 'unauthorized';

export type TetherState =
  | { name: 'idle' }
  | { name: 'connecting'; attempt: number }
  | { name: 'open' }
  | { name: 'closing' }
  | {
      name: 'waiting';
      /** The next attempt's number. */
      attempt: number;
      /** When it starts, in `performance.now()` milliseconds. */
      retryAt: number;
      /** Milliseconds left when this object was made. */
      retryInMs: number;
    }
  | {
      name: 'closed';
      reason: CloseReasonName;
      /** The close code (app close, or the server's refusing close code). */
      code: number | null;
      /** The HTTP status that refused the connection, if any. */
      status: number | null;
      /**
       * What happened, e.g. `refused by the server with close code 4004: no such room`. A
       * `refused` with neither code nor status is the browser refusing the URL from this page
       * (an insecure `ws://` from an `https://` page), in the browser's words.
       */
      message: string;
    };

export type DisconnectCause = {
  /** `'other'` is reserved for causes a later engine version adds. */
  kind: 'closed' | 'http' | 'failed' | 'heartbeat_timeout' | 'connect_timeout' | 'token_unavailable' | 'stream_restarted' | 'other';
  code: number | null;
  status: number | null;
  message: string;
};

export type DropReason = 'overflow' | 'expired' | 'closed' | 'rejected';

/** Event payloads, by event name. */
export interface TetherEventMap {
  /** Every lifecycle transition. */
  state: { state: TetherState; previous: TetherState };
  /**
   * A message: JSON payload (Tether protocol), text, or bytes (raw binary frames). `event` is
   * a named SSE event's type (one listed in `sseEvents`); absent for unnamed events.
   */
  /** `lastEventId`: an event stream's position once this message is handled (its `id:`, or the last before it); save it and pass it as the `lastEventId` option to resume there. An empty `id:` resets it only after a non-empty one on the same stream (a resumed `EventSource` starts with an empty id of its own). */
  message: { data: unknown; channel?: string; offset?: number; event?: string; lastEventId?: string };
  /** The connection ended or an attempt failed; attempt `attempt` starts in `delayMs`. */
  reconnecting: { attempt: number; delayMs: number; cause: DisconnectCause };
  /** Accepted messages that will not be delivered, and why. Never silent. */
  dropped: { ids: number[]; reason: DropReason; code?: string };
  /** The server acknowledged an acked publish. */
  acked: { id: number; offset: number | null };
  /** An acknowledged message's `timeoutMs` passed without its ack (once per message). */
  ack_timed_out: { id: number; status: Unacked };
  /**
   * A subscription became active (after every reconnect too, and after the client
   * resubscribed a channel whose messages skipped offsets); `recovered: false` after a
   * reconnect or such a resubscribe means a gap. An event stream (`http(s)://`, Tether protocol) gets one at the
   * start of every stream from a server that says where it starts (the reference relay).
   */
  subscribed: { channel: string; offset: number; recovered: boolean };
  unsubscribed: { channel: string };
  /** A channel's member set changed; `members` is the whole set. */
  presence: { channel: string; members: string[]; joined: string[]; left: string[] };
  /** A heartbeat round trip. */
  rtt: { rttMs: number };
  /** A problem the client handled by itself (bad frame, transport failure...). */
  error: TetherError;
}

export type TetherEventType = keyof TetherEventMap;

/** What the token provider is asked with. */
export interface TokenRequest {
  /** The connection attempt the token is for. */
  attempt: number;
  /** The server refused the previous token: do not return a cached one. */
  refresh: boolean;
}

/**
 * Options; every one is optional and mirrors the Rust `ConfigBuilder` (defaults in brackets).
 * A value of the wrong type, an unknown (misspelt) key, or `lowWaterBytes` above
 * `highWaterBytes` throws a `TetherError` with code `invalid_config` naming the option.
 */
export interface TetherClientOptions {
  /** `'raw'` passes frames through to any server; `'tether'` adds channels, presence, acks, requests. ['raw'] */
  protocol?: 'raw' | 'tether';
  backoff?: {
    /** First retry delay scale. [500] */
    initialMs?: number;
    /** Cap of the un-jittered delay. [30000] */
    maxMs?: number;
    /** Growth per attempt. [2] */
    factor?: number;
    /** ['full'] */
    jitter?: 'none' | 'full' | 'equal' | 'decorrelated';
    /**
     * Give up (state `closed`, reason `gave_up`) after this many failed attempts, not
     * counting those that fail while the browser is offline (`navigator.onLine` false), nor an
     * event stream that delivered events before it ended. [unlimited]
     */
    maxAttempts?: number;
    /** Uptime after which the backoff resets. [5000] */
    minUptimeMs?: number;
  };
  heartbeat?: {
    /**
     * `'auto'` = app pings over a Tether-protocol WebSocket; off over a raw one (browsers can
     * neither send ping frames nor see the server's) and over SSE (EventSource hides the
     * server's comment keep-alives). Off, a connection the browser sees close is still
     * reconnected at once, but a silently dead one is not found: over a raw WebSocket, set
     * `'app'` with `rawPing`/`rawPong` if the server answers a text ping. `'server'` expects a
     * message or event at least every `intervalMs × (maxMissed + 1)`: only for a server that
     * sends data that often, since its pings are invisible here. ['auto']
     */
    mode?: 'auto' | 'app' | 'server' | 'off';
    /** [25000] */
    intervalMs?: number;
    /** Unanswered pings in a row before the connection is declared dead. [2] */
    maxMissed?: number;
    /** Optional hard deadline per ping. */
    pongTimeoutMs?: number;
    /** Deadline of the probe ping sent on `online` / back to foreground. [5000] */
    probeTimeoutMs?: number;
    /** Any inbound frame proves the connection alive. [true] */
    anyFrameIsLiveness?: boolean;
    /**
     * Raw-mode app ping/pong texts, sent only with `mode: 'app'` on the raw protocol (refused
     * otherwise: they would not be sent). ['ping' / 'pong']
     */
    rawPing?: string;
    rawPong?: string;
  };
  outbox?: {
    /** [1000] */
    maxMessages?: number;
    /** [1048576] */
    maxBytes?: number;
    /** ['drop-oldest'] (reported with a `dropped` event) */
    overflow?: 'drop-oldest' | 'reject-new';
    /** Drop messages not sent within this time (reason `expired`). [none] */
    ttlMs?: number;
  };
  /**
   * What the server's close codes mean. By default (docs/protocol.md, "Close codes and HTTP statuses"): 1008 and
   * 4001-4003 fetch a fresh token for one more try, 4004-4099 stop, 1012 spreads the reconnect
   * over `serviceRestartWindowMs`, 1013 waits `tryAgainLaterDelayMs`, everything else retries
   * with the backoff. (Browsers never expose HTTP statuses, so there is no status table here.)
   */
  closePolicy?: {
    /**
     * Overrides of the defaults, e.g. `[{from: 4500, to: 4599, action: 'stop'}]`; where ranges
     * overlap, later entries take precedence over earlier ones. Codes 1000-4999.
     */
    codes?: Array<{ from: number; to?: number; action: 'retry' | 'reauth' | 'stop' }>;
    /** Window over which reconnects after close 1012 without advice are spread. [5000] */
    serviceRestartWindowMs?: number;
    /** Minimum wait after close 1013 without advice. [5000] */
    tryAgainLaterDelayMs?: number;
    /** Cap on any delay or window the server advises. [300000] */
    maxServerDelayMs?: number;
  };
  /**
   * Called before every connection attempt; return the token (or a promise of it). Browsers
   * cannot set headers, so the token goes in the URL (`?token=`) or in the first message.
   * Only the latest call's answer is used: one that settles after the client asked again (its
   * attempt timed out, or `close()` then `connect()`, which numbers attempts from 1 again) is
   * ignored, so a slow fetch for the last session never opens the next one.
   */
  token?: (request: TokenRequest) => string | Promise<string>;
  /** ['query'] ('first-message' needs the Tether protocol) */
  tokenPlacement?: 'query' | 'first-message';
  /** Query parameter name for the token (refused with `'first-message'`). ['token'] */
  tokenParam?: string;
  /** Time for the token fetch, and again for the handshake once the request is sent. [10000] An event stream waits for its head up to the heartbeat's silence limit (75 s by default) when longer: many SSE servers send it only with their first event. */
  connectTimeoutMs?: number;
  /** Close handshake. [2000] */
  closeTimeoutMs?: number;
  /** Default `request()` timeout. [10000] */
  requestTimeoutMs?: number;
  /**
   * Largest message either way. [1048576] A larger incoming one is reported as a
   * `frame_too_large` error event with its size, and the connection is kept. It is not copied
   * into the module's memory (which never shrinks) when its size alone tells: a binary one, or
   * a text longer in UTF-16 units than the limit (measured through a `Blob`, a short-lived
   * copy in JavaScript memory). A text within the limit in units but over it in UTF-8 bytes is
   * copied first (at most 3× the limit). A send of a string longer than the limit in UTF-16
   * units, or of binary data longer in bytes, is refused with `too_large` (`details.size`: that
   * length) before it is copied, so before the client's state and protocol are checked (a
   * closed client refuses it as `too_large`, not `closed`). So is one longer than
   * `outbox.maxBytes`, which it could never fit in.
   */
  maxMessageBytes?: number;
  /** Fail sent requests at once when the connection drops. [true] */
  failRequestsOnDisconnect?: boolean;
  /**
   * Restart an open event stream from its position on an `online` event, or when the page
   * comes back after the stream was open for the heartbeat's `intervalMs` while it was hidden
   * (see `setForeground`; `reconnecting` with cause `stream_restarted`, delay 0): an
   * `EventSource` cannot be probed, and its socket may have died with
   * the old network. Off for a server that sends `id:` fields but does not read the
   * `lastEventId` query parameter an `EventSource` resumes with: a restart there loses or
   * repeats what it sent meanwhile. [true]
   */
  restartStreams?: boolean;
  /** Presence identity sent in `hello`. [random] */
  clientId?: string;
  /** Fixes the PRNG seed (tests). [crypto.getRandomValues] */
  seed?: number;
  /** WebSocket subprotocols to offer (an `http(s)` event-stream URL has none: refused). */
  subprotocols?: string[];
  /** An event stream's position to resume from on the first attempt: the `lastEventId` of the last message handled before the page was closed. It goes in the URL as `?lastEventId=` (EventSource cannot send the `Last-Event-ID` header), as every resume does. Refused on a `ws(s)` URL. */
  lastEventId?: string;
  /**
   * SSE: the `event:` names to receive. Unnamed events always arrive; a named one arrives
   * (and its `id:` becomes the resume position) only if listed here, since `EventSource` hands
   * an `event: name` event only to a listener for that name and has no catch-all. Listed ones
   * arrive as `message` events, like unnamed ones. `open`, `error` and `""` are refused
   * (EventSource's own events, not messages), and so is a non-empty list on a `ws(s)` URL
   * (a WebSocket has no named events). [none]
   */
  sseEvents?: string[];
  /** SSE: send the page's cookies with a cross-origin stream (`EventSource`'s `withCredentials`; the server must allow credentials for the page's origin). Refused on a `ws(s)` URL, whose handshake carries them anyway. [false] */
  withCredentials?: boolean;
  /**
   * Stop writing once the socket's `bufferedAmount` reaches `highWaterBytes` (messages wait
   * in the outbox), resume at `lowWaterBytes`. Messages are handed to the socket at most
   * `highWaterBytes` (plus one message) at a time. Refused on an `http(s)` URL (an event
   * stream sends nothing). [1 MiB / 256 KiB]
   */
  backpressure?: { highWaterBytes?: number; lowWaterBytes?: number };
  /** Wire `online`/`offline` (window or worker scope) and `visibilitychange`. [true] */
  lifecycle?: boolean;
  /**
   * Connect right after construction (in a microtask, so handlers can be attached), unless
   * `close()` or `connect()` was called first. [true]
   */
  autoConnect?: boolean;
  /** Where to load the wasm module from (`TetherClient.connect` only): this entry's own file, as for `init`. */
  wasm?: string | URL | Request | Response | BufferSource | WebAssembly.Module;
}

/**
 * Per-call options are checked like the constructor's: a key the call does not take (a
 * misspelling, `ttl` for `ttlMs`, `timeout` on a send) or a value of the wrong type throws a
 * `TetherError` with code `invalid_argument` naming it (the promise-returning calls reject with
 * it), and nothing is sent.
 */
export interface SendOptions {
  /** Tether protocol: keep until acknowledged, re-send after reconnects. [true for publish/send in Tether mode] */
  ack?: boolean;
  /** Drop (reason `expired`) if not sent within this time. */
  ttlMs?: number;
  /**
   * Acknowledged messages only: stop waiting for the ack after this long, with an
   * `ack_timed_out` event (a `sendAcked`/`publishAcked` rejection). The TTL is cut to it, so
   * nothing is sent after it. With `ack: false` it is refused (`invalid_options`).
   */
  timeoutMs?: number;
}

/** How `sendAcked`/`publishAcked` wait: `SendOptions` with acknowledgement always on (an `ack` key is refused). */
export type AckedOptions = Omit<SendOptions, 'ack'>;

/** `request()`'s options; unknown keys are refused as for `SendOptions`. */
export type RequestOptions = {
  /**
   * Gives the request up when it aborts: the promise rejects with `signal.reason` (as `fetch`
   * does), a request still queued is never sent, and a reply that comes later is ignored. An
   * already aborted signal rejects at once and sends nothing.
   */
  signal?: AbortSignal;
} & (
  | {
      /** Reject with `timeout` if no reply came within this time. [the client's `requestTimeoutMs`] */
      timeoutMs?: number;
      timeout?: never;
    }
  | {
      /** @deprecated the old name of `timeoutMs`, still accepted; giving both is refused (`invalid_argument`). */
      timeout?: number;
      timeoutMs?: never;
    }
);

export interface TetherStats {
  attempts: number;
  opens: number;
  reconnects: number;
  messagesAccepted: number;
  /** Messages done with: acknowledged, or (awaiting no ack) passed on by the browser's send buffer, or dropped. */
  messagesSettled: number;
  /** Messages handed to the socket: the app's, resends, and the protocol's own (subscribes, acks, and the heartbeat's pings, which are messages in the browser). */
  framesSent: number;
  /** Messages (or SSE events) received; the browser hands over no WebSocket ping, pong or close frame, and those are not counted. */
  framesReceived: number;
  /** Payload bytes of the messages `framesSent` counts. */
  bytesSent: number;
  /** Payload bytes of the messages `framesReceived` counts. */
  bytesReceived: number;
  resent: number;
  droppedOverflow: number;
  droppedExpired: number;
  droppedClosed: number;
  droppedRejected: number;
  duplicatesDropped: number;
  /** Channel messages dropped as unexpected (on a channel not subscribed to, or before the answer to its subscribe); only the first per channel and connection is also an `error` event. */
  unexpectedDropped: number;
  errors: number;
  /** Inputs for a transport that was already replaced (late events of an old socket), ignored. The end of one the client was closing itself is not counted. */
  staleInputs: number;
  /** Messages not yet settled: waiting to be sent, awaiting an ack, or still in the browser's send buffer (sent again on the next connection if this one ends). */
  outboxLength: number;
  outboxBytes: number;
  lastRttMs: number | null;
}

/**
 * A string (text), an `ArrayBuffer` or view (binary), or a JSON value: a plain object, array,
 * boxed primitive, or anything with a `toJSON`. Another object (a `Blob`, `Map`, `Error`,
 * `FormData`...), which JSON would write as `{}`, is refused with `invalid_argument`.
 */
export type Payload = string | ArrayBuffer | ArrayBufferView | unknown;

export class TetherClient {
  /**
   * Loads the module if needed, then creates (and by default connects) a client. The connect
   * starts in the next task, after the code awaiting this has attached its handlers, so they
   * see every event from the first state change on.
   */
  static connect(url: string, options?: TetherClientOptions): Promise<TetherClient>;
  /** Needs `await init()` first (throws `not_initialized`). `ws(s)://` = WebSocket, `http(s)://` = SSE. */
  constructor(url: string, options?: TetherClientOptions);

  /**
   * Adds a handler; returns a function that removes it. An event name that is not one of
   * `TetherEventMap`'s, or a handler that is not a function, throws a `TetherError` with code
   * `invalid_argument` (as do `once` and `off`: `off(type)` without the handler removes
   * nothing; removing a handler never added does nothing).
   */
  on<K extends TetherEventType>(type: K, handler: (event: TetherEventMap[K]) => void): () => void;
  off<K extends TetherEventType>(type: K, handler: (event: TetherEventMap[K]) => void): void;
  once<K extends TetherEventType>(type: K, handler: (event: TetherEventMap[K]) => void): () => void;

  /**
   * Starts connecting (from `idle` or `closed`), or tries at once while `waiting`. Never
   * before a minimum the server set (Retry-After, close 1013), also after a `close()`: the
   * client then waits for it (`reconnecting` names the refusal), and a token the server refused
   * is asked for with `refresh: true`.
   */
  connect(): void;
  /**
   * Returns the message id; throws `TetherError` (`outbox_full`, `too_large`, `closed`...;
   * for a string or bytes too long, `too_large` comes first: see `maxMessageBytes`).
   */
  send(data: Payload, options?: SendOptions): number;
  publish(channel: string, data: unknown, options?: SendOptions): number;
  /**
   * Resolves with the stored offset (`null` without a channel) once the server acknowledges the
   * message. Rejects with a `TetherError`: a refusal (`outbox_full`, `closed`...), `dropped`
   * (`details.reason`), or `ack_timed_out` after `timeoutMs` (`details.status`).
   */
  sendAcked(data: unknown, options?: AckedOptions): Promise<number | null>;
  publishAcked(channel: string, data: unknown, options?: AckedOptions): Promise<number | null>;
  /**
   * Resolves with the reply's payload. Rejects with a `TetherError`: a refusal, `timeout` after
   * `timeoutMs`, `connection_lost`, `rejected` (the server's code in `details.serverCode`); or
   * with `signal.reason` once the `signal` option aborts.
   */
  request<T = unknown>(data: unknown, options?: RequestOptions): Promise<T>;
  /**
   * Tether protocol over a WebSocket; renewed with resume after every reconnect. An event
   * stream (SSE) carries the one channel its URL names: there `subscribe`, `unsubscribe` (and
   * `document()`) throw `receive_only`.
   */
  subscribe(channel: string): void;
  unsubscribe(channel: string): void;
  /**
   * The members of a subscribed channel, `undefined` if it is not subscribed. On a raw-protocol
   * client, which has no channels, throws `needs_tether_protocol` as `subscribe` does.
   */
  presence(channel: string): string[] | undefined;
  /**
   * Closes and stops reconnecting: queued messages are reported `dropped` (reason `closed`,
   * which rejects their `sendAcked`/`publishAcked` promises; acknowledged ones already written
   * when the close handshake ends) and pending requests reject (those already written when the
   * close handshake ends: a reply that comes before it resolves them). With
   * `{drain: timeoutMs}` it first delivers what is pending, for at most that long (a client
   * waiting to reconnect tries at once, unless the server asked for a later retry). Sends are
   * refused with `closing` until the close is done, unless `connect()` is called meanwhile (an
   * effect's cleanup and remount): the close then finishes (`closed` is reported), the client
   * connects again (at the server's minimum, if it set one: a later `connect()` waits for it
   * too), and what is sent after that `connect()` is accepted for the new connection
   * (with `{drain}`, delivered with the rest); a `close()` after that `connect()` is the last
   * word again. The client
   * is kept, handlers and all, for a later `connect()`, and so is its memory: the module holds
   * the client's event callback, so even an unreferenced client is never garbage-collected.
   * Call `dispose()` when done with it.
   */
  close(code?: number, reason?: string, options?: { drain?: number }): void;
  /**
   * Closes (if still open) and frees the client's memory in the module: the only way to free
   * it. Pending `request` promises reject with a `closed` `TetherError`, pending
   * `sendAcked`/`publishAcked` ones with `dropped` (`details.reason: 'closed'`): the close's own
   * events (`dropped`, `state`) still reach the handlers during the call (the close's handshake
   * is not waited for, so messages already written and awaiting their ack are in a `dropped`
   * event too, where `close()` reports them when the handshake ends), which may read the
   * client there (a `connect()` there throws `disposed`), unless `dispose()` is called from inside an event handler; every handler is then removed, so nothing arrives after
   * it returns. Afterwards `connect()`, `send()` and every other call into
   * the client, and `state`/`stats`/`clientId`, throw `disposed`. Calling it again does nothing.
   */
  dispose(): void;
  /**
   * What the window's (or a worker's) `online`/`offline` events tell the client already. While
   * waiting, online reconnects at once (a server's minimum delay still holds). While open, a
   * WebSocket with heartbeats (the Tether protocol, or `heartbeat.mode: 'app'`) is probed with
   * a ping that has a short deadline, and online restarts an event stream that has a position and has been up
   * `minUptimeMs` from that position (`reconnecting` with cause `stream_restarted`, unless
   * `restartStreams` is false): EventSource cannot be probed.
   */
  networkChanged(online: boolean): void;
  /**
   * What `visibilitychange` tells the client already. Back in the foreground, as online, but
   * an event stream is restarted only if it was open for at least the heartbeat's
   * `intervalMs` while the page was hidden (25 s by default: a tab switched away and back is
   * not worth a new request), and not while offline.
   */
  setForeground(foreground: boolean): void;

  readonly state: TetherState;
  readonly stats: TetherStats;
  readonly clientId: string;
}
