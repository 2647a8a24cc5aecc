/**
 * The path from emit to the durable queue, against queues that fail: the
 * writer keeps order and retries; the endpoint survives queue errors.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createLogger } from '../src/log.ts';
import { notificationsSchema } from '../src/notify/config.ts';
import { Endpoint } from '../src/notify/endpoint.ts';
import type { RegistryEvent } from '../src/notify/event.ts';
import { FileQueue } from '../src/notify/file-queue.ts';
import type { EventQueue, QueuedEvent } from '../src/notify/queue.ts';
import { QueueWriter } from '../src/notify/writer.ts';
import { removeDir, teardown, tempDir, waitFor } from './helpers/tools.ts';
import { startReceiver } from './helpers/webhook-receiver.ts';
import { sampleEvent } from './notify-queue-contract.ts';

const td = teardown();
after(() => td.run());
const logger = createLogger({ level: 'silent' });

/** A FileQueue whose next calls of each kind fail as many times as asked. */
class FlakyQueue implements EventQueue {
  readonly inner: FileQueue;
  readonly failNext = { push: 0, peek: 0, ack: 0 };
  pushes = 0;

  constructor(inner: FileQueue) {
    this.inner = inner;
  }

  #maybeFail(kind: 'push' | 'peek' | 'ack'): void {
    if (this.failNext[kind] > 0) {
      this.failNext[kind]--;
      throw new Error(`injected ${kind} failure`);
    }
  }

  async push(events: readonly RegistryEvent[]): Promise<void> {
    this.#maybeFail('push');
    this.pushes++;
    await this.inner.push(events);
  }
  async peek(max: number): Promise<QueuedEvent[]> {
    this.#maybeFail('peek');
    return this.inner.peek(max);
  }
  async ack(ids: readonly string[]): Promise<void> {
    this.#maybeFail('ack');
    await this.inner.ack(ids);
  }
  depth(): Promise<number> {
    return this.inner.depth();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function flakyQueue(): Promise<FlakyQueue> {
  const dir = await tempDir('notify-writer');
  const queue = new FlakyQueue(await FileQueue.open(dir));
  td.add(async () => {
    await queue.close().catch(() => {});
    await removeDir(dir);
  });
  return queue;
}

void test('writer: many events per push, in order, retried while the queue fails', async () => {
  const queue = await flakyQueue();
  queue.failNext.push = 3;
  let woken = 0;
  const writer = new QueueWriter({ queue, logger, onPushed: () => woken++ });
  for (let i = 0; i < 50; i++) writer.add(sampleEvent(i));
  assert.equal(writer.pending, 50);
  await writer.flush();
  assert.equal(writer.pending, 0);
  assert.ok(queue.pushes <= 3, `events are batched (${queue.pushes} pushes for 50 events)`);
  assert.ok(woken >= 1);
  assert.deepEqual((await queue.peek(100)).map((q) => q.event.target.tag), Array.from({ length: 50 }, (_, i) => `t${i}`));
});

void test('writer: past the memory bound new events are dropped and counted; close reports what was not queued', async () => {
  const queue = await flakyQueue();
  queue.failNext.push = 1_000_000;
  const writer = new QueueWriter({ queue, logger, onPushed: () => {}, maxPending: 5 });
  for (let i = 0; i < 8; i++) writer.add(sampleEvent(i));
  assert.equal(writer.pending, 5);
  assert.equal(writer.dropped, 3);
  assert.equal(writer.close(), 5);
  await writer.flush();
  assert.equal(await queue.depth(), 0);
});

void test('endpoint: failing peeks and acks are retried; a lost ack resends, nothing is lost', async () => {
  const hook = await startReceiver();
  td.add(() => hook.close());
  const queue = await flakyQueue();
  await queue.push([0, 1, 2].map((i) => sampleEvent(i)));
  queue.failNext.peek = 2;
  queue.failNext.ack = 1;
  const config = notificationsSchema.parse({ endpoints: [{ name: 'e', url: hook.url, batchSize: 1, threshold: 5, backoff: '10ms' }] }).endpoints[0]!;
  const endpoint = new Endpoint({ config, queue, logger, pollMs: 20 });
  endpoint.start();
  td.add(() => endpoint.stop());
  await waitFor('an empty queue', async () => (await queue.depth()) === 0);
  assert.deepEqual(hook.events().map((e) => e.target.tag), ['t0', 't0', 't1', 't2']);
  const stats = await endpoint.stats();
  assert.equal(stats.failures, 3);
  assert.equal(stats.consecutiveFailures, 0);
  assert.equal(stats.delivered, 4);
});

void test('endpoint: an entry that is not an event is skipped; the events around it are delivered', async () => {
  const hook = await startReceiver();
  td.add(() => hook.close());
  const queue = await flakyQueue();
  await queue.push([sampleEvent(0), { id: 'x' } as unknown as RegistryEvent, sampleEvent(2)]);
  const config = notificationsSchema.parse({ endpoints: [{ name: 'e', url: hook.url }] }).endpoints[0]!;
  const endpoint = new Endpoint({ config, queue, logger, pollMs: 20 });
  endpoint.start();
  td.add(() => endpoint.stop());
  await waitFor('an empty queue', async () => (await queue.depth()) === 0);
  assert.deepEqual(hook.events().map((e) => e.target.tag), ['t0', 't2']);
});
