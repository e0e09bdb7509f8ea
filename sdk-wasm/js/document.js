// tether-web/documents: shared documents for the browser client. Not a module of its own:
// scripts/build-web appends this file to tether.js to make the `tether-web/documents` entry,
// whose module is built with the engine's documents (the default `tether-web` entry leaves
// them out and is smaller). It uses tether.js's TetherClient, Emitter, call, channelName, jsonText,
// TetherError, OPEN_DOCUMENT and CLOSE_DOCUMENT, and installs the client's side of documents
// onto TetherClient (end of this file), so that the default entry ships none of it.

/**
 * A shared document (Tether protocol): a JSON map of keys to values that this client changes
 * locally at once and that converges to the server's order for every client, through drops
 * and reconnects. Get it with `client.document(channel)`. The engine does the work (pending
 * changes replayed over remote ones, rollback on rejection, resync); this only forwards.
 */
export class TetherDocument extends Emitter {
  constructor(client, channel) {
    super(['change', 'rejected', 'resynced']);
    this._client = client;
    this.channel = channel;
  }

  /** The value of `key` as this client sees it (its pending changes included), or `undefined`. */
  get(key) {
    return parse(this._do((raw) => raw.document_get(this.channel, String(key), false)));
  }

  /** Whether `key` is present. */
  has(key) {
    return this.get(key) !== undefined;
  }

  /** Whether `key` shows a local change the server has not confirmed yet. */
  isPending(key) {
    return this._do((raw) => raw.document_pending(this.channel, String(key)));
  }

  /** The whole document as this client sees it, as a plain object (a copy). */
  toJSON() {
    return this._info(false).map;
  }

  /** `[key, value]` pairs of `toJSON()`, in key order. */
  entries() {
    return Object.entries(this.toJSON());
  }

  /** The server's state as this client last confirmed it (without its pending changes). */
  confirmed() {
    return this._info(true).map;
  }

  /** The confirmed server version (`null` before the first sync). */
  get version() {
    return this._info().version;
  }

  /** The server's epoch of `version`: a new one means the server lost the document (restart). */
  get epoch() {
    return this._info().epoch;
  }

  /** How many local changes await the server's confirmation. */
  get pending() {
    return this._info().pending;
  }

  /** Sets `key` (per key, the last writer in server order wins). Returns the change id. */
  set(key, value) {
    return this.change([{ op: 'set', key, value }]);
  }

  /** Removes `key`. Returns the change id. */
  delete(key) {
    return this.change([{ op: 'delete', key }]);
  }

  /** Adds `by` to the number at `key` (missing counts as 0); concurrent increments sum exactly. */
  increment(key, by = 1) {
    return this.change([{ op: 'increment', key, by }]);
  }

  /** Sets `key` only if absent: `conflict` if this client sees it, a `rejected` event if another got there first. */
  insert(key, value) {
    return this.change([{ op: 'insert', key, value }]);
  }

  /**
   * Applies operations atomically, all or nothing: `{op: 'set' | 'insert', key, value}`,
   * `{op: 'delete', key}`, `{op: 'increment', key, by}`. Shown at once (a `change` event
   * with origin `local_pending`), then confirmed, or rejected and rolled back. Returns its id.
   */
  change(ops) {
    // As a payload is: a Map, Blob or bytes refused rather than stored as `{}`, strings well-formed.
    const text = jsonText(ops);
    return this._do((raw) => raw.change_document(this.channel, text));
  }

  /** Stops syncing; the handle can no longer be used (pending changes are still sent). */
  close() {
    const c = this._client;
    if (c._docs.get(this.channel) !== this) return;
    c._docs.delete(this.channel);
    if (c._raw) call(() => c._raw.command(CLOSE_DOCUMENT, this.channel));
    this._handlers.clear();
  }

  // Calls the module with this open document's client; its refusals become TetherErrors.
  _do(f) {
    const raw = this._client._live();
    if (this._client._docs.get(this.channel) !== this) {
      throw new TetherError('not_open', `document ${JSON.stringify(this.channel)} was closed`);
    }
    return call(() => f(raw));
  }

  // {generation, version, epoch, pending}, with `map`: the view (false) or the confirmed state (true).
  _info(map) {
    return JSON.parse(this._do((raw) => raw.document_info(this.channel, map)));
  }
}

const parse = (json) => (json === undefined ? undefined : JSON.parse(json));

// The client's side of documents. Its open documents are `_docs` (channel → TetherDocument),
// made on the first `document()` call.
const { _dispatch: dispatchClientEvent, dispose: disposeClient } = TetherClient.prototype;
Object.assign(TetherClient.prototype, {
  /**
   * The shared document on `channel` (Tether protocol): opened and synced on first use (again
   * after every reconnect), the same object on later calls until its `close()`.
   */
  document(channel) {
    channel = channelName(channel);
    const docs = this._docs || (this._docs = new Map());
    let doc = docs.get(channel);
    if (!doc) {
      this._do((raw) => raw.command(OPEN_DOCUMENT, channel));
      docs.set(channel, (doc = new TetherDocument(this, channel)));
      // Which opening of the channel's document it is: the engine's events name theirs.
      doc._generation = doc._info().generation;
    }
    return doc;
  },

  // A document's events (doc_change, doc_rejected, doc_resynced) go to its TetherDocument as
  // change, rejected and resynced; the client's own events to the client. Only to the
  // TetherDocument of the opening they name: a handler that closes and reopens a document
  // while a batch of events is delivered must not pass the closed one's rest to the new one.
  _dispatch(kind, json, bytes) {
    if (!kind.startsWith('doc_')) return dispatchClientEvent.call(this, kind, json, bytes);
    const { generation, ...d } = JSON.parse(json);
    const doc = this._docs && this._docs.get(d.channel);
    if (!doc || doc._generation !== generation) return;
    if (kind === 'doc_change') for (const c of d.changes) c.deleted = c.value === undefined;
    doc._emit(kind.slice(4), d);
  },

  // After the client's own dispose(), whose close still reaches the documents' handlers
  // (pending changes rolled back), nothing more does.
  dispose() {
    disposeClient.call(this);
    if (!this._docs) return;
    for (const doc of this._docs.values()) doc._handlers.clear();
    this._docs.clear();
  },
});
