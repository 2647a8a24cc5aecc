import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient } from '@keyv/redis';
import { configSchema } from '../src/config/schema.ts';
import { createMeta } from '../src/meta/create.ts';
import { MemoryMeta } from '../src/meta/memory.ts';
import { RedisMeta } from '../src/meta/redis.ts';
import { metaContract } from './meta-contract.ts';
import { redisSkip, redisUrl } from './helpers/redis.ts';

/** TEST_REDIS_URL points the Redis tests elsewhere (127.0.0.1 only, by house rule). */


metaContract('memory', async () => ({ meta: new MemoryMeta({ maxEntries: 1000 }), cleanup: async () => {} }));

void test('the memory store peeks synchronously: one shared frozen value, gone with delete, set or expiry; get still copies', async () => {
  const meta = new MemoryMeta({ maxEntries: 10 });
  assert.equal(meta.peek('k'), undefined);
  await meta.set('k', { digest: 'a', n: 1 });
  const first = meta.peek<{ digest: string; n: number }>('k');
  assert.deepEqual(first, { digest: 'a', n: 1 });
  assert.equal(meta.peek('k'), first, 'parsed once, shared');
  assert.ok(Object.isFrozen(first));
  const copy = await meta.get<{ digest: string; n: number }>('k');
  assert.notEqual(copy, first);
  copy!.n = 99;
  assert.equal(meta.peek<{ n: number }>('k')!.n, 1);
  await meta.set('k', { digest: 'b', n: 2 });
  assert.deepEqual(meta.peek('k'), { digest: 'b', n: 2 });
  await meta.delete('k');
  assert.equal(meta.peek('k'), undefined);
  await meta.set('t', 1, 30);
  assert.equal(meta.peek('t'), 1);
  await new Promise((resolve) => setTimeout(resolve, 60));
  assert.equal(meta.peek('t'), undefined);
});

const redisDown = await redisSkip();

metaContract(
  'redis',
  async () => {
    const namespace = `tender-test-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
    return { meta: new RedisMeta({ url: redisUrl, namespace }), cleanup: () => deleteNamespace(namespace) };
  },
  { skip: redisDown || undefined },
);

void test('redis keys live under <namespace>:meta:', { skip: redisDown }, async () => {
  const namespace = `tender-test-${process.pid}-${Date.now()}-ns`;
  const meta = new RedisMeta({ url: redisUrl, namespace });
  const client = createClient({ url: redisUrl });
  await client.connect();
  try {
    await meta.set('tag:x', { a: 1 }, 60_000);
    assert.deepEqual(await client.keys(`${namespace}:*`), [`${namespace}:meta:tag:x`]);
    const ttl = await client.pTTL(`${namespace}:meta:tag:x`);
    assert.ok(ttl > 50_000 && ttl <= 60_000, `ttl ${ttl}`);
  } finally {
    await meta.close();
    await client.close();
    await deleteNamespace(namespace);
  }
});

void test('createMeta picks the configured store', async () => {
  const memory = await createMeta(configSchema.parse({}).meta);
  assert.ok(memory instanceof MemoryMeta);
  await memory.close();
  const redis = await createMeta(configSchema.parse({ meta: { driver: "redis" } }).meta);
  assert.ok(redis instanceof RedisMeta);
  await redis.close();
});

async function deleteNamespace(namespace: string): Promise<void> {
  const client = createClient({ url: redisUrl });
  await client.connect();
  try {
    const keys = await client.keys(`${namespace}:*`);
    if (keys.length > 0) await client.del(keys);
  } finally {
    await client.close();
  }
}
