import assert from 'node:assert/strict';
import { appendFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { FileQueue } from '../src/notify/file-queue.ts';
import { RedisQueue } from '../src/notify/redis-queue.ts';
import { deletePrefix, keysUnder, redisSkip, redisUrl, uniquePrefix } from './helpers/redis.ts';
import { removeDir, tempDir } from './helpers/tools.ts';
import { queueContract, sampleEvent } from './notify-queue-contract.ts';

queueContract('file', async () => {
  const dir = await tempDir('notify-queue');
  return { open: () => FileQueue.open(dir), cleanup: () => removeDir(dir) };
});

queueContract('file (small segments)', async () => {
  const dir = await tempDir('notify-queue');
  return { open: () => FileQueue.open(dir, { segmentBytes: 4096 }), cleanup: () => removeDir(dir) };
});

const skip = await redisSkip();

queueContract(
  'redis',
  async () => {
    const prefix = uniquePrefix('notifyq');
    return { open: async () => RedisQueue.open({ url: redisUrl, prefix, name: 'hook' }), cleanup: () => deletePrefix(prefix) };
  },
  { skip },
);

void test('file queue: fully acknowledged segments are deleted, the rest stay', async () => {
  const dir = await tempDir('notify-queue');
  const queue = await FileQueue.open(dir, { segmentBytes: 2048 });
  try {
    for (let i = 0; i < 60; i++) await queue.push([sampleEvent(i)]);
    const segments = (await readdir(dir)).filter((n) => n.endsWith('.log'));
    assert.ok(segments.length >= 5, `expected several segments, got ${segments.length}`);
    await queue.ack((await queue.peek(40)).map((q) => q.id));
    const left = (await readdir(dir)).filter((n) => n.endsWith('.log'));
    assert.ok(left.length < segments.length, `${left.length} of ${segments.length} segments left after acking 40 of 60`);
    assert.equal(await queue.depth(), 20);
    await queue.ack((await queue.peek(100)).map((q) => q.id));
    await queue.push([sampleEvent(60)]);
    const files = await readdir(dir);
    assert.equal(files.filter((n) => n.endsWith('.log')).length, 1, `one segment once everything older is acknowledged: ${files.join(', ')}`);
    assert.deepEqual((await queue.peek(10)).map((q) => q.event.target.tag), ['t60']);
  } finally {
    await queue.close();
    await removeDir(dir);
  }
});

void test('file queue: a write torn by a crash is cut off at open; what was pushed before is intact', async () => {
  const dir = await tempDir('notify-queue');
  try {
    const queue = await FileQueue.open(dir);
    await queue.push([sampleEvent(0), sampleEvent(1)]);
    await queue.ack([(await queue.peek(1))[0]!.id]);
    await queue.close();
    const [segment] = (await readdir(dir)).filter((n) => n.endsWith('.log'));
    const intact = await readFile(join(dir, segment!), 'utf8');
    await appendFile(join(dir, segment!), '{"s":2,"e":{"id":"torn","acti');

    const again = await FileQueue.open(dir);
    try {
      assert.equal(await readFile(join(dir, segment!), 'utf8'), intact, 'the torn line is truncated');
      assert.deepEqual((await again.peek(10)).map((q) => q.event.target.tag), ['t1']);
      await again.push([sampleEvent(2)]);
      assert.deepEqual((await again.peek(10)).map((q) => q.event.target.tag), ['t1', 't2']);
    } finally {
      await again.close();
    }
    const third = await FileQueue.open(dir);
    assert.deepEqual((await third.peek(10)).map((q) => q.event.target.tag), ['t1', 't2']);
    await third.close();
  } finally {
    await removeDir(dir);
  }
});

void test('file queue: calls after close fail', async () => {
  const dir = await tempDir('notify-queue');
  const queue = await FileQueue.open(dir);
  await queue.close();
  await assert.rejects(queue.push([sampleEvent(0)]), /closed/);
  await removeDir(dir);
});

void test('redis queue: one stream and one lease key per endpoint under the prefix', { skip }, async () => {
  const prefix = uniquePrefix('notifyq');
  const queue = RedisQueue.open({ url: redisUrl, prefix, name: 'hook' });
  try {
    await queue.push([sampleEvent(0)]);
    await queue.peek(1);
    assert.deepEqual(await keysUnder(prefix), [`${prefix}:notify:hook:events`, `${prefix}:notify:hook:lease`]);
    await queue.close();
    assert.deepEqual(await keysUnder(prefix), [`${prefix}:notify:hook:events`], 'close releases the lease');
  } finally {
    await deletePrefix(prefix);
  }
});

void test('redis queue: one replica at a time delivers; the lease passes on close or expiry', { skip }, async () => {
  const prefix = uniquePrefix('notifyq');
  const a = RedisQueue.open({ url: redisUrl, prefix, name: 'hook', leaseMs: 300 });
  const b = RedisQueue.open({ url: redisUrl, prefix, name: 'hook', leaseMs: 300 });
  const c = RedisQueue.open({ url: redisUrl, prefix, name: 'hook', leaseMs: 300 });
  try {
    await a.push([sampleEvent(0)]);
    await b.push([sampleEvent(1)]);
    assert.deepEqual((await a.peek(10)).map((q) => q.event.target.tag), ['t0', 't1'], 'either replica pushes to the same stream');
    assert.deepEqual(await b.peek(10), [], 'b waits while a holds the lease');
    await a.close();
    assert.equal((await b.peek(10)).length, 2, 'b takes over once a closes');
    assert.deepEqual(await c.peek(10), []);
    // b "dies" (stops renewing): its lease expires and c takes over.
    await new Promise((r) => setTimeout(r, 400));
    assert.equal((await c.peek(10)).length, 2);
    assert.deepEqual(await b.peek(10), [], 'and b, back again, does not deliver beside c');
  } finally {
    await Promise.all([a, b, c].map((q) => q.close().catch(() => {})));
    await deletePrefix(prefix);
  }
});
