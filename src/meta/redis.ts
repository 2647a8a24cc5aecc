import KeyvRedis, { createClient, Keyv } from '@keyv/redis';
import type { MetaStore } from './meta.ts';

/** How long a command (including any wait for a connection) may take before failing. */
const commandTimeoutMs = 5000;

/**
 * The shared metadata store: keyv over Redis, every key under
 * `<namespace>:meta:`. Failures throw (they are never silently turned into
 * misses), and no command waits longer than a few seconds for a lost
 * connection, so callers can fall back to serving what they have.
 */
export class RedisMeta implements MetaStore {
  readonly #keyv: Keyv;

  constructor(options: { url: string; namespace: string }) {
    const namespace = `${options.namespace}:meta`;
    let everReady = false;
    const client = createClient({
      url: options.url,
      commandOptions: { timeout: commandTimeoutMs },
      socket: {
        connectTimeout: commandTimeoutMs,
        // Until the first connection, give up quickly (the call fails and the
        // next one tries again); after it, keep reconnecting with backoff.
        reconnectStrategy: (retries, cause) => (!everReady && retries >= 2 ? cause : Math.min(100 * 2 ** retries, 2000)),
      },
    });
    client.on('ready', () => {
      everReady = true;
    });
    const store = new KeyvRedis(client, {
      namespace,
      keyPrefixSeparator: ':',
      throwOnErrors: true,
      throwOnConnectError: true,
    });
    this.#keyv = new Keyv({ store, namespace, useKeyPrefix: false, throwOnErrors: true });
  }

  async get<T>(key: string): Promise<T | undefined> {
    return this.#keyv.get<T>(key);
  }

  async set<T>(key: string, value: T, ttlMs?: number): Promise<void> {
    await this.#keyv.set(key, value, ttlMs);
  }

  async delete(key: string): Promise<boolean> {
    return this.#keyv.delete(key);
  }

  async close(): Promise<void> {
    await this.#keyv.disconnect();
  }
}
