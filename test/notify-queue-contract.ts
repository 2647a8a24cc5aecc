/**
 * The contract every notification queue (file, Redis) must meet. A queue's
 * test file calls `queueContract` with a factory for a fresh, isolated store.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildEvent, type RegistryEvent } from '../src/notify/event.ts';
import type { EventQueue } from '../src/notify/queue.ts';

export interface QueueStore {
  /** A queue instance on the store (call again after `close` for a "restarted process"). */
  open(): Promise<EventQueue>;
  /** Removes everything the store holds. */
  cleanup(): Promise<void>;
}

/** A distinct, realistic event; `i` shows up in the tag and the request id. */
export function sampleEvent(i: number, repository = 'acme/app'): RegistryEvent {
  return buildEvent(
    {
      action: 'push',
      kind: 'manifest',
      repository,
      digest: `sha256:${i.toString(16).padStart(64, '0')}`,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      size: 100 + i,
      tag: `t${i}`,
      request: { id: `req-${i}`, addr: '127.0.0.1:5555', host: 'tender.test', method: 'PUT', useragent: 'test' },
      actor: { name: 'ci' },
    },
    { id: `00000000-0000-4000-8000-${i.toString().padStart(12, '0')}`, now: new Date(1_700_000_000_000 + i), source: { addr: 'host:5000', instanceID: 'inst' } },
  );
}

const tags = (queued: Array<{ event: RegistryEvent }>) => queued.map((q) => q.event.target.tag);

export function queueContract(name: string, newStore: () => Promise<QueueStore>, options: { skip?: string | false } = {}): void {
  void describe(`notification queue contract: ${name}`, { skip: options.skip ?? false }, () => {
    async function withQueue(fn: (queue: EventQueue, store: QueueStore) => Promise<void>): Promise<void> {
      const store = await newStore();
      const queue = await store.open();
      try {
        await fn(queue, store);
      } finally {
        await queue.close().catch(() => {});
        await store.cleanup();
      }
    }

    void test('a new queue is empty', () =>
      withQueue(async (queue) => {
        assert.deepEqual(await queue.peek(10), []);
        assert.equal(await queue.depth(), 0);
        await queue.push([]);
        assert.equal(await queue.depth(), 0);
      }));

    void test('peek returns the oldest events in order, up to max, without removing them', () =>
      withQueue(async (queue) => {
        await queue.push([sampleEvent(0), sampleEvent(1)]);
        await queue.push([sampleEvent(2)]);
        assert.equal(await queue.depth(), 3);
        assert.deepEqual(tags(await queue.peek(2)), ['t0', 't1']);
        assert.deepEqual(tags(await queue.peek(10)), ['t0', 't1', 't2']);
        assert.deepEqual(tags(await queue.peek(10)), ['t0', 't1', 't2']);
        assert.equal(await queue.depth(), 3);
      }));

    void test('events come back exactly as pushed', () =>
      withQueue(async (queue) => {
        const event = sampleEvent(7);
        await queue.push([event]);
        const [queued] = await queue.peek(1);
        assert.deepEqual(queued?.event, event);
        assert.equal(typeof queued?.id, 'string');
      }));

    void test('ack removes events; it is idempotent and ignores unknown ids', () =>
      withQueue(async (queue) => {
        await queue.push([0, 1, 2, 3].map((i) => sampleEvent(i)));
        await queue.ack(['no-such-id', '1-0', '0-1', '', ' ', '-1', '1e3']);
        assert.equal(await queue.depth(), 4, 'ids the queue did not hand out acknowledge nothing');
        const first = await queue.peek(2);
        await queue.ack(first.map((q) => q.id));
        assert.equal(await queue.depth(), 2);
        assert.deepEqual(tags(await queue.peek(10)), ['t2', 't3']);
        await queue.ack(first.map((q) => q.id));
        await queue.ack(['no-such-id', '999999999', '1-0', '']);
        assert.equal(await queue.depth(), 2);
        await queue.ack((await queue.peek(10)).map((q) => q.id));
        assert.equal(await queue.depth(), 0);
        assert.deepEqual(await queue.peek(10), []);
      }));

    void test('acknowledging out of order leaves the others in order', () =>
      withQueue(async (queue) => {
        await queue.push([0, 1, 2, 3].map((i) => sampleEvent(i)));
        const all = await queue.peek(10);
        await queue.ack([all[1]!.id, all[3]!.id]);
        assert.deepEqual(tags(await queue.peek(10)), ['t0', 't2']);
        assert.equal(await queue.depth(), 2);
      }));

    void test('concurrent pushes keep call order', () =>
      withQueue(async (queue) => {
        await Promise.all([0, 1, 2, 3, 4].map((i) => queue.push([sampleEvent(i)])));
        assert.deepEqual(tags(await queue.peek(10)), ['t0', 't1', 't2', 't3', 't4']);
      }));

    void test('events and acknowledgements survive a restart', () =>
      withQueue(async (queue, store) => {
        await queue.push([0, 1, 2, 3, 4].map((i) => sampleEvent(i)));
        const head = await queue.peek(2);
        await queue.ack(head.map((q) => q.id));
        await queue.close();
        const again = await store.open();
        try {
          assert.equal(await again.depth(), 3);
          assert.deepEqual(tags(await again.peek(10)), ['t2', 't3', 't4']);
          await again.push([sampleEvent(5)]);
          assert.deepEqual(tags(await again.peek(10)), ['t2', 't3', 't4', 't5']);
        } finally {
          await again.close();
        }
      }));

    void test('thousands of events keep their order through partial acks and a restart', () =>
      withQueue(async (queue, store) => {
        const total = 2500;
        for (let i = 0; i < total; i += 250) await queue.push(Array.from({ length: 250 }, (_, j) => sampleEvent(i + j)));
        const seen: string[] = [];
        for (let round = 0; round < 4; round++) {
          const batch = await queue.peek(300);
          seen.push(...tags(batch).map(String));
          await queue.ack(batch.map((q) => q.id));
        }
        await queue.close();
        const again = await store.open();
        try {
          assert.equal(await again.depth(), total - 1200);
          for (let batch = await again.peek(500); batch.length > 0; batch = await again.peek(500)) {
            seen.push(...tags(batch).map(String));
            await again.ack(batch.map((q) => q.id));
          }
          assert.deepEqual(seen, Array.from({ length: total }, (_, i) => `t${i}`));
          assert.equal(await again.depth(), 0);
        } finally {
          await again.close();
        }
      }));
  });
}
