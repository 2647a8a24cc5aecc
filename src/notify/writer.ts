import type { Logger } from '../log.ts';
import type { RegistryEvent } from './event.ts';
import { retryDelay } from './policy.ts';
import type { EventQueue } from './queue.ts';

export interface QueueWriterOptions {
  queue: EventQueue;
  logger: Logger;
  /** Called after every successful push (to wake the delivery loop). */
  onPushed: () => void;
  /** Events held in memory while the queue cannot be written; beyond this, new events are dropped (and counted). */
  maxPending?: number;
  /** Events per push: one write and one sync for all of them. */
  maxBatch?: number;
}

/**
 * Takes events without blocking the caller and pushes them to a queue in the
 * order they came, many per push (one fsync for all events that arrived
 * meanwhile). When the queue cannot be written (disk full, Redis down) it
 * keeps the events in memory, up to a bound, and retries with back-off.
 */
export class QueueWriter {
  readonly #queue: EventQueue;
  readonly #logger: Logger;
  readonly #onPushed: () => void;
  readonly #maxPending: number;
  readonly #maxBatch: number;
  #pending: RegistryEvent[] = [];
  #draining: Promise<void> | undefined;
  #closed = false;
  #dropped = 0;
  #wakeRetry: (() => void) | undefined;

  constructor(options: QueueWriterOptions) {
    this.#queue = options.queue;
    this.#logger = options.logger;
    this.#onPushed = options.onPushed;
    this.#maxPending = options.maxPending ?? 100_000;
    this.#maxBatch = options.maxBatch ?? 1000;
  }

  /** Events accepted but not yet in the queue. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Events dropped because the in-memory bound was reached. */
  get dropped(): number {
    return this.#dropped;
  }

  add(event: RegistryEvent): void {
    if (this.#closed) return;
    if (this.#pending.length >= this.#maxPending) {
      if (this.#dropped++ % 1000 === 0) {
        this.#logger.error({ dropped: this.#dropped, pending: this.#pending.length }, 'notification queue unwritable and memory bound reached; dropping events');
      }
      return;
    }
    this.#pending.push(event);
    this.#draining ??= this.#drain();
  }

  /** Resolves once every event added so far is in the queue (or the writer is closed). */
  flush(): Promise<void> {
    return this.#draining ?? Promise.resolve();
  }

  /** Stops retrying; events still pending are reported and forgotten. */
  close(): number {
    this.#closed = true;
    this.#wakeRetry?.();
    const lost = this.#pending.length;
    if (lost > 0) this.#logger.error({ lost }, 'notification events not queued before shutdown');
    this.#pending = [];
    return lost;
  }

  async #drain(): Promise<void> {
    let failures = 0;
    while (this.#pending.length > 0 && !this.#closed) {
      const batch = this.#pending.slice(0, this.#maxBatch);
      try {
        await this.#queue.push(batch);
      } catch (err) {
        failures++;
        if (failures === 1 || failures % 10 === 0) {
          this.#logger.warn({ err: (err as Error).message, pending: this.#pending.length, failures }, 'cannot write notification queue; retrying');
        }
        await this.#sleep(retryDelay(failures, { backoffMs: 100, maxMs: 5000 }));
        continue;
      }
      if (failures > 0) this.#logger.info({ failures }, 'notification queue writable again');
      failures = 0;
      if (!this.#closed) this.#pending.splice(0, batch.length);
      this.#onPushed();
    }
    this.#draining = undefined;
  }

  async #sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeRetry = done;
    });
    this.#wakeRetry = undefined;
  }
}
