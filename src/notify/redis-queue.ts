import { randomUUID } from 'node:crypto';
import { createClient } from '@keyv/redis';
import type { RegistryEvent } from './event.ts';
import type { EventQueue, QueuedEvent } from './queue.ts';

/** How long a command (including any wait for a lost connection) may take before failing. */
const commandTimeoutMs = 5000;

/** Takes or renews the delivery lease when it is free or already ours. */
const takeLease = `
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0`;

const releaseLease = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export interface RedisQueueOptions {
  url: string;
  /** Key prefix (the deployment's Redis namespace). */
  prefix: string;
  /** The endpoint's name. */
  name: string;
  /** How long a replica keeps the delivery lease without renewing it (every `peek` renews it). Default 30 s. */
  leaseMs?: number;
  /** Called with connection errors (the client reconnects by itself). */
  onError?: (err: Error) => void;
}

/**
 * An `EventQueue` in a Redis stream, `<prefix>:notify:<name>:events`, shared
 * by every replica: any of them can push, and the events survive the process
 * (as far as Redis persists them: use AOF for the same guarantee as the file
 * queue).
 *
 * So that one replica at a time delivers (in order, without every replica
 * sending every event), `peek` first takes or renews a lease,
 * `<prefix>:notify:<name>:lease`; while another replica holds it, `peek`
 * returns nothing. A replica that dies leaves the lease to expire after
 * `leaseMs`; `close` releases it at once.
 */
export class RedisQueue implements EventQueue {
  readonly #client: Client;
  readonly #key: string;
  readonly #leaseKey: string;
  readonly #leaseMs: number;
  readonly #owner = randomUUID();

  private constructor(client: Client, options: RedisQueueOptions) {
    this.#client = client;
    this.#key = `${options.prefix}:notify:${options.name}:events`;
    this.#leaseKey = `${options.prefix}:notify:${options.name}:lease`;
    this.#leaseMs = options.leaseMs ?? 30_000;
  }

  /**
   * A queue on its own connection. It does not wait for Redis: while Redis is
   * unreachable, calls fail after a few seconds and the caller retries.
   */
  static open(options: RedisQueueOptions): RedisQueue {
    const client = newClient(options.url);
    client.on('error', (err: Error) => options.onError?.(err));
    client.connect().catch((err: unknown) => options.onError?.(err as Error));
    return new RedisQueue(client, options);
  }

  async push(events: readonly RegistryEvent[]): Promise<void> {
    if (events.length === 0) return;
    const multi = this.#client.multi();
    for (const event of events) multi.xAdd(this.#key, '*', { e: JSON.stringify(event) });
    await multi.exec();
  }

  async peek(max: number): Promise<QueuedEvent[]> {
    const held = await this.#client.eval(takeLease, { keys: [this.#leaseKey], arguments: [this.#owner, String(this.#leaseMs)] });
    if (held !== 1) return [];
    const entries = await this.#client.xRange(this.#key, '-', '+', { COUNT: Math.max(1, max) });
    const out: QueuedEvent[] = [];
    for (const entry of entries) {
      const event = parseEvent(entry.message['e']);
      // An unreadable entry can never be delivered: drop it rather than block the queue forever.
      if (event) out.push({ id: entry.id, event });
      else await this.#client.xDel(this.#key, entry.id);
    }
    return out;
  }

  async ack(ids: readonly string[]): Promise<void> {
    const valid = ids.filter((id) => /^\d+-\d+$/.test(id));
    if (valid.length > 0) await this.#client.xDel(this.#key, valid);
  }

  async depth(): Promise<number> {
    return this.#client.xLen(this.#key);
  }

  async close(): Promise<void> {
    if (!this.#client.isReady) {
      this.#client.destroy();
      return;
    }
    try {
      await this.#client.eval(releaseLease, { keys: [this.#leaseKey], arguments: [this.#owner] });
    } finally {
      await this.#client.close();
    }
  }
}

function newClient(url: string) {
  return createClient({
    url,
    commandOptions: { timeout: commandTimeoutMs },
    socket: { connectTimeout: commandTimeoutMs, reconnectStrategy: (retries: number) => Math.min(100 * 2 ** retries, 2000) },
  });
}

type Client = ReturnType<typeof newClient>;

function parseEvent(text: string | undefined): RegistryEvent | undefined {
  if (text === undefined) return undefined;
  try {
    const event = JSON.parse(text) as unknown;
    return typeof event === 'object' && event !== null ? (event as RegistryEvent) : undefined;
  } catch {
    return undefined;
  }
}
