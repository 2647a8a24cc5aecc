/**
 * Redis for tests: where it is, whether it is up (under CI=true a missing
 * Redis is a failure, elsewhere a skip), unique key prefixes and their
 * cleanup.
 */
import { connect } from 'node:net';
import { createClient } from '@keyv/redis';

/** TEST_REDIS_URL points the Redis tests elsewhere (127.0.0.1 only, by house rule). */
export const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

/**
 * The `skip` value for Redis tests: false when Redis answers, else the
 * reason. Under CI=true never a skip: the tests run and fail against the
 * missing Redis.
 */
export async function redisSkip(): Promise<string | false> {
  const down = await unreachable(new URL(redisUrl));
  if (!down || process.env.CI === 'true') return false;
  return `Redis unreachable at ${redisUrl} (${down}); set CI=true to make this a failure`;
}

/** A key prefix no other test (or run) uses. */
export function uniquePrefix(tag: string): string {
  return `tender-test-${tag}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`;
}

/** Deletes every key under `<prefix>:`. */
export async function deletePrefix(prefix: string): Promise<void> {
  const client = createClient({ url: redisUrl });
  await client.connect();
  try {
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(keys);
  } finally {
    await client.close();
  }
}

/** The keys under `<prefix>:`, sorted. */
export async function keysUnder(prefix: string): Promise<string[]> {
  const client = createClient({ url: redisUrl });
  await client.connect();
  try {
    return (await client.keys(`${prefix}:*`)).sort();
  } finally {
    await client.close();
  }
}

/** Why Redis cannot be reached, or '' when it can. */
function unreachable(url: URL): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect({ host: url.hostname, port: Number(url.port || 6379), timeout: 1000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve('');
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve('connect timed out');
    });
    socket.once('error', (err) => resolve(err.message));
  });
}
