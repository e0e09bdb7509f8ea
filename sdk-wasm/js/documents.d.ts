// Type declarations for tether-web/documents: everything of tether-web, plus shared documents.
// The entry loads its own, larger module (the engine with documents); use it instead of
// 'tether-web', not beside it (each entry instantiates its own module).
import { TetherClient as BaseClient, type DropReason, type TetherClientOptions } from './tether.js';

export * from './tether.js';

/** The document's shape: keys to JSON values (template-literal keys work: `` `item:${string}` ``). */
export type DocumentShape = Record<string, unknown>;

/** One operation of an atomic `change()`. */
export type DocumentOp<T extends object = DocumentShape> =
  | { [K in keyof T & string]: { op: 'set' | 'insert'; key: K; value: T[K] } }[keyof T & string]
  | { op: 'delete'; key: keyof T & string }
  | { op: 'increment'; key: keyof T & string; by: number };

/**
 * Why the view moved: `local_pending` (this client's change, shown at once), `confirmed` (the
 * server accepted it; the view usually does not move), `remote` (another client, or a
 * resync), `rolled_back` (a local change was rejected or dropped and its effect removed).
 */
export type ChangeOrigin = 'local_pending' | 'confirmed' | 'remote' | 'rolled_back';

/** One key of the view that changed. */
export interface KeyChange<T extends object = DocumentShape> {
  key: keyof T & string;
  /** The new value (`undefined` when deleted). */
  value: T[keyof T] | undefined;
  deleted: boolean;
  /** A remote change replaced a value this client had written: it lost the race. */
  overwroteLocal: boolean;
}

/** Document event payloads, by event name. */
export interface TetherDocumentEventMap<T extends object = DocumentShape> {
  /** Keys of the view changed, and why. */
  change: { channel: string; origin: ChangeOrigin; changes: KeyChange<T>[] };
  /**
   * A local change was refused by the server (`conflict`, `type_mismatch`, `out_of_range`) or dropped
   * (`expired`, `overflow`, `closed`) and rolled back. `change` is the id its method returned.
   */
  rejected: { channel: string; change: number; code: 'conflict' | 'type_mismatch' | 'out_of_range' | DropReason | (string & {}) };
  /** The document was replaced by a server snapshot (first sync, a gap, a server restart: see `epoch`); pending changes were replayed on top. */
  resynced: { channel: string; version: number };
}

export type TetherDocumentEventType = keyof TetherDocumentEventMap;

/**
 * A shared document (Tether protocol): a JSON map that this client changes locally at once
 * and that converges to the server's order for every client. From `client.document(channel)`.
 * Mutations return the change id and throw a `TetherError` (`conflict`, `type_mismatch`,
 * `out_of_range`, `empty_change`, `invalid_op`, `too_deep`, `not_open`, `outbox_full`, ...) when refused locally.
 */
export class TetherDocument<T extends object = DocumentShape> {
  readonly channel: string;
  /** The value as this client sees it (its pending changes included). */
  get<K extends keyof T & string>(key: K): T[K] | undefined;
  has(key: keyof T & string): boolean;
  /** Whether the key shows a local change the server has not confirmed yet. */
  isPending(key: keyof T & string): boolean;
  /** The whole view, as a plain object (a copy). */
  toJSON(): Partial<T>;
  entries(): [keyof T & string, T[keyof T]][];
  /** The server's state as last confirmed (without pending changes). */
  confirmed(): Partial<T>;
  /** The confirmed server version (`null` before the first sync). */
  readonly version: number | null;
  /** The server epoch of `version`; a new one means the server lost the document (an in-memory server restarted). */
  readonly epoch: string | null;
  /** Local changes not yet confirmed. */
  readonly pending: number;

  /** Last writer in server order wins. */
  set<K extends keyof T & string>(key: K, value: T[K]): number;
  delete(key: keyof T & string): number;
  /** Concurrent increments from every client sum exactly. [by = 1] */
  increment(key: keyof T & string, by?: number): number;
  /** Only if absent: `conflict` thrown if this client sees the key, a `rejected` event if another client got there first. */
  insert<K extends keyof T & string>(key: K, value: T[K]): number;
  /** Several operations, atomically. */
  change(ops: DocumentOp<T>[]): number;
  /**
   * Stops syncing: the server is told to send no more of it. Changes already made are still
   * sent (their outcome comes as the client's `acked`/`dropped` events, no longer as this
   * document's). Later calls throw `not_open`.
   */
  close(): void;

  on<K extends TetherDocumentEventType>(type: K, handler: (event: TetherDocumentEventMap<T>[K]) => void): () => void;
  off<K extends TetherDocumentEventType>(type: K, handler: (event: TetherDocumentEventMap<T>[K]) => void): void;
  once<K extends TetherDocumentEventType>(type: K, handler: (event: TetherDocumentEventMap<T>[K]) => void): () => void;
}

/** The client of `tether-web`, with shared documents. */
export class TetherClient extends BaseClient {
  /** Loads the module if needed, then creates (and by default connects) a client. */
  static connect(url: string, options?: TetherClientOptions): Promise<TetherClient>;
  /** The shared document on `channel` (Tether protocol; `needs_tether_protocol` otherwise): opened on first use, the same object afterwards. */
  document<T extends object = DocumentShape>(channel: string): TetherDocument<T>;
}
