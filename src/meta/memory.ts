import { LRUCache } from 'lru-cache';
import type { MetaStore } from './meta.ts';

/**
 * The in-process metadata store: a bounded lru-cache with per-entry ttl.
 *
 * It stands straight on lru-cache rather than on keyv because get() is on
 * the hot path of every tag request: through keyv (its JSON-with-Buffer
 * deserialiser, hooks and expiry wrapper) a get measured ~4-7 µs, here
 * ~0.5 µs. Values are still stored as JSON text, so callers get copies and
 * see exactly what the Redis store would give them.
 */
export class MemoryMeta implements MetaStore {
  /** The JSON text (get() parses a fresh copy), and the value parsed once for peek(). */
  readonly #lru: LRUCache<string, { text: string; shared?: unknown }>;

  constructor(options: { maxEntries: number }) {
    this.#lru = new LRUCache<string, { text: string; shared?: unknown }>({ max: options.maxEntries });
  }

  async get<T>(key: string): Promise<T | undefined> {
    const entry = this.#lru.get(key);
    return entry === undefined ? undefined : (JSON.parse(entry.text) as T);
  }

  peek<T>(key: string): Readonly<T> | undefined {
    const entry = this.#lru.get(key);
    if (entry === undefined) return undefined;
    entry.shared ??= Object.freeze(JSON.parse(entry.text) as object);
    return entry.shared as Readonly<T>;
  }

  /** As with the Redis store, a missing or zero ttlMs means no expiry. */
  async set<T>(key: string, value: T, ttlMs?: number): Promise<void> {
    const text = JSON.stringify(value);
    if (text === undefined) {
      this.#lru.delete(key);
      return;
    }
    this.#lru.set(key, { text }, ttlMs ? { ttl: ttlMs } : undefined);
  }

  async delete(key: string): Promise<boolean> {
    const live = this.#lru.has(key);
    this.#lru.delete(key);
    return live;
  }

  async close(): Promise<void> {
    this.#lru.clear();
  }
}
