import type { RegistryEvent } from './event.ts';

/** An event waiting in a queue, with the queue's own id for it (pass it to `ack`). */
export interface QueuedEvent {
  id: string;
  event: RegistryEvent;
}

/**
 * A durable, ordered queue of events for one endpoint. Implementations:
 * `FileQueue` (segment files under a directory) and `RedisQueue` (a Redis
 * stream); both pass test/notify-queue-contract.ts.
 *
 * - Once `push` resolves, the events survive a crash of the process
 *   (SIGKILL): they are delivered after a restart unless acknowledged.
 * - `peek` returns the oldest unacknowledged events, oldest first, without
 *   removing them: the same events come back until they are acknowledged.
 * - `ack` is idempotent; unknown ids are ignored. Acknowledged events never
 *   come back, except that a crash right after delivery may lose the
 *   acknowledgement (a duplicate, never a loss).
 */
export interface EventQueue {
  push(events: readonly RegistryEvent[]): Promise<void>;
  peek(max: number): Promise<QueuedEvent[]>;
  ack(ids: readonly string[]): Promise<void>;
  /** Events pushed and not yet acknowledged. */
  depth(): Promise<number>;
  close(): Promise<void>;
}
