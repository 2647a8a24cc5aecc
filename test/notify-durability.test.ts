/**
 * Crash tests: a child process queues events and is killed with SIGKILL; a
 * new process on the same queue delivers every one of them (duplicates are
 * allowed, losses are not).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { deletePrefix, redisSkip, redisUrl, uniquePrefix } from './helpers/redis.ts';
import { removeDir, teardown, tempDir, waitFor } from './helpers/tools.ts';
import { startReceiver, type WebhookReceiver } from './helpers/webhook-receiver.ts';

const fixture = fileURLToPath(new URL('./fixtures/notify-child.ts', import.meta.url));
const td = teardown();
after(() => td.run());

interface Child {
  process: ChildProcess;
  /** Resolves when the child prints `line`. */
  printed(line: string, timeoutMs?: number): Promise<void>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

function startChild(args: Record<string, unknown>): Child {
  const child = spawn(process.execPath, [fixture, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  td.add(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return {
    process: child,
    exited,
    stderr: () => err,
    printed: (line, timeoutMs = 20_000) =>
      waitFor(`the child to print ${line} (stderr: ${err.slice(0, 500)})`, async () => {
        if (child.exitCode !== null) throw new Error(`child exited ${child.exitCode}: ${err}`);
        return out.split('\n').includes(line);
      }, timeoutMs, 20),
  };
}

async function kill(child: Child): Promise<void> {
  child.process.kill('SIGKILL');
  const { signal } = await child.exited;
  assert.equal(signal, 'SIGKILL');
}

async function receiver(mode?: Parameters<typeof startReceiver>[0]): Promise<WebhookReceiver> {
  const r = await startReceiver(mode);
  td.add(() => r.close());
  return r;
}

/** Asserts every tag t0…t(count-1) arrived, first arrivals in order; returns the number of duplicates. */
function assertAllArrived(hook: WebhookReceiver, count: number): number {
  const tags = hook.events().map((e) => Number(e.target.tag!.slice(1)));
  const first: number[] = [];
  const seen = new Set<number>();
  for (const t of tags) {
    if (!seen.has(t)) first.push(t);
    seen.add(t);
  }
  assert.deepEqual(first, Array.from({ length: count }, (_, i) => i), 'every event arrived, first arrivals in emit order');
  return tags.length - count;
}

async function killedBeforeDelivery(queue: 'file' | 'redis', extra: Record<string, unknown>): Promise<void> {
  const count = 200;
  const hook = await receiver();
  await hook.down();
  const dataDir = await tempDir('notify-crash');
  td.add(() => removeDir(dataDir));
  const common = { url: hook.url, dataDir, queue, ...extra };

  const first = startChild({ mode: 'emit', count, ...common });
  await first.printed('queued');
  await kill(first);
  assert.equal(hook.attempts.length, 0, 'nothing was delivered before the kill');

  await hook.up();
  const second = startChild({ mode: 'deliver', ...common });
  await second.printed('drained', 30_000);
  assert.equal((await second.exited).code, 0, second.stderr());
  assert.equal(assertAllArrived(hook, count), 0, 'no duplicates when nothing was in flight');
}

void test('file queue: events queued by a process killed with SIGKILL are delivered by the next one', async () => {
  await killedBeforeDelivery('file', {});
});

void test('file queue: a process killed mid-delivery loses nothing (duplicates allowed)', async () => {
  const count = 60;
  const hook = await receiver({ mode: { delayMs: 20 } });
  const dataDir = await tempDir('notify-crash');
  td.add(() => removeDir(dataDir));
  const common = { url: hook.url, dataDir, queue: 'file' };

  const first = startChild({ mode: 'emit', count, ...common });
  await first.printed('queued');
  await waitFor('some deliveries', async () => hook.attempts.length >= 10);
  await kill(first);
  const before = hook.accepted().length;
  assert.ok(before < count, `the kill came before the end (${before} of ${count} delivered)`);

  const second = startChild({ mode: 'deliver', ...common });
  await second.printed('drained', 30_000);
  assert.equal((await second.exited).code, 0, second.stderr());
  const duplicates = assertAllArrived(hook, count);
  assert.ok(duplicates <= 2, `at most the batch in flight is sent twice (${duplicates} duplicates)`);
});

const skipRedis = await redisSkip();

void test('redis queue: events queued by a process killed with SIGKILL are delivered by the next one', { skip: skipRedis }, async () => {
  const prefix = uniquePrefix('notify-crash');
  td.add(() => deletePrefix(prefix));
  await killedBeforeDelivery('redis', { redisUrl, prefix });
});
