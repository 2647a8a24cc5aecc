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
