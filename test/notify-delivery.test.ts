/**
 * Notifications end to end: a notifier with real queues POSTing to a real
 * webhook receiver on loopback that records every request.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { createLogger } from '../src/log.ts';
import { notificationsSchema, type NotificationsConfigInput } from '../src/notify/config.ts';
import type { EventInput } from '../src/notify/event.ts';
import { FileQueue } from '../src/notify/file-queue.ts';
import { createNotifier, type Notifier, type NotifierDeps } from '../src/notify/notifier.ts';
import { verifySignature } from '../src/notify/policy.ts';
import { deletePrefix, redisSkip, redisUrl, uniquePrefix } from './helpers/redis.ts';
import { removeDir, teardown, tempDir, waitFor } from './helpers/tools.ts';
import { startReceiver, type WebhookReceiver } from './helpers/webhook-receiver.ts';

const td = teardown();
after(() => td.run());

type EndpointInput = NonNullable<NotificationsConfigInput['endpoints']>[number];

interface Harness {
  notifier: Notifier;
  dataDir: string;
  logs: Array<Record<string, unknown>>;
}

/** A notifier over fresh file queues (or the given deps), closed and removed after the file's tests. */
async function startNotifier(endpoints: EndpointInput[], over: Partial<NotifierDeps> & { queue?: 'file' | 'redis' } = {}): Promise<Harness> {
  const dataDir = over.dataDir ?? (await tempDir('notify'));
  const logs: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const config = notificationsSchema.parse({ queue: over.queue ?? 'file', endpoints });
  const notifier = await createNotifier(config, {
    dataDir,
    logger: createLogger({ level: 'debug', destination }),
    instanceId: 'test-instance',
    sourceAddr: 'tender.test:5000',
    pollMs: 50,
    ...over,
  });
  td.add(async () => {
    await notifier.close();
    if (!over.dataDir) await removeDir(dataDir);
  });
  return { notifier, dataDir, logs };
}

async function receiver(mode?: Parameters<typeof startReceiver>[0]): Promise<WebhookReceiver> {
  const r = await startReceiver(mode);
  td.add(() => r.close());
  return r;
}

const manifestType = 'application/vnd.oci.image.manifest.v1+json';
const configType = 'application/vnd.oci.image.config.v1+json';
const layerType = 'application/vnd.oci.image.layer.v1.tar+gzip';
const digestOf = (i: number) => `sha256:${i.toString(16).padStart(64, '0')}`;
const request = { id: 'req-1', addr: '127.0.0.1:40000', host: 'tender.test:5000', method: 'GET', useragent: 'docker/27' };

function input(i: number, over: Partial<EventInput> = {}): EventInput {
  return { action: 'push', kind: 'manifest', repository: 'acme/app', digest: digestOf(i), mediaType: manifestType, size: i, tag: `t${i}`, request, ...over };
}

const quick = { threshold: 2, backoff: '20ms', maxBackoff: '200ms' } as const;

void test('events arrive in the Distribution envelope with the v1 content type and configured headers', async () => {
  const hook = await receiver();
  const { notifier } = await startNotifier([
    { name: 'hook', url: hook.url, headers: { Authorization: 'Bearer abc', 'X-Multi': ['a', 'b'] } },
  ]);
  const emitted = [
    notifier.emit(input(1, { action: 'pull', cache: 'hit' })),
    notifier.emit(input(2, { kind: 'blob', mediaType: layerType, tag: undefined, request: { ...request, method: 'PUT' }, actor: { name: 'ci' } })),
    notifier.emit(input(3, { kind: 'blob', action: 'mount', fromRepository: 'hub/library/alpine', mediaType: layerType, tag: undefined })),
    notifier.emit(input(4, { action: 'delete', request: { ...request, method: 'DELETE' } })),
  ];
  await hook.waitForEvents(4);
  const post = hook.accepted()[0]!;
  assert.equal(post.method, 'POST');
  assert.equal(post.path, '/hook');
  assert.equal(post.headers['content-type'], 'application/vnd.docker.distribution.events.v1+json');
  assert.equal(post.headers['authorization'], 'Bearer abc');
  assert.equal(post.headers['x-multi'], 'a, b');
  assert.equal(post.headers['x-tender-signature-256'], undefined, 'no signature without a secret');

  const received = hook.events();
  // v1 envelopes leave out the v2-only fromRepository; everything else arrives as emitted.
  const { fromRepository: _from, ...mountTarget } = emitted[2]!.target;
  assert.deepEqual(received, [emitted[0], emitted[1], { ...emitted[2], target: mountTarget }, emitted[3]]);
  const pull = received[0]!;
  assert.match(pull.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.ok(Math.abs(Date.parse(pull.timestamp) - Date.now()) < 10_000);
  assert.deepEqual(pull.target, {
    mediaType: manifestType,
    digest: digestOf(1),
    size: 1,
    length: 1,
    repository: 'acme/app',
    url: `http://tender.test:5000/v2/acme/app/manifests/${digestOf(1)}`,
    tag: 't1',
  });
  assert.deepEqual(pull.request, request);
  assert.deepEqual(pull.source, { addr: 'tender.test:5000', instanceID: 'test-instance' });
  assert.deepEqual(pull.tender, { cache: 'hit' });
  assert.deepEqual(received[1]!.actor, { name: 'ci' });
  assert.deepEqual(received[3]!.target, { digest: digestOf(4), repository: 'acme/app', tag: 't4' });

  // The receiver records a POST before its answer reaches the endpoint.
  await waitFor('the endpoint to count the deliveries', async () => (await notifier.stats()).endpoints[0]!.delivered === 4);
  const [stats] = (await notifier.stats()).endpoints;
  assert.equal(stats!.depth, 0);
  assert.equal(stats!.failures, 0);
});

void test('mediaType v2 sends the v2 content type and v2 fields', async () => {
  const hook = await receiver();
  const { notifier } = await startNotifier([{ name: 'hook', url: hook.url, mediaType: 'v2' }]);
  notifier.emit(input(1, { kind: 'blob', action: 'mount', fromRepository: 'hub/library/alpine', mediaType: layerType }));
  await hook.waitForEvents(1);
  assert.equal(hook.accepted()[0]!.headers['content-type'], 'application/vnd.docker.distribution.events.v2+json');
  assert.equal(hook.events()[0]!.target.fromRepository, 'hub/library/alpine');
});

void test('receiver down (503, then connection refused) and up again: every event arrives, in order, once', async () => {
  const hook = await receiver({ mode: 503 });
  const { notifier, logs } = await startNotifier([{ name: 'hook', url: hook.url, batchSize: 4, ...quick }]);
  for (let i = 0; i < 10; i++) notifier.emit(input(i));
  await waitFor('several refused POSTs', async () => hook.attempts.length >= 3);
  await hook.down();
  for (let i = 10; i < 20; i++) notifier.emit(input(i));
  await waitFor('connection refused', async () => /ECONNREFUSED/.test((await notifier.stats()).endpoints[0]!.lastError ?? ''));
  const during = (await notifier.stats()).endpoints[0]!;
  assert.equal(during.depth, 20, 'nothing is dropped while the receiver is down');
  assert.ok(during.consecutiveFailures >= 3);
  hook.respond('ok');
  await hook.up();
  for (let i = 20; i < 30; i++) notifier.emit(input(i));
  await hook.waitForEvents(30);
  await waitFor('the endpoint to count the deliveries', async () => (await notifier.stats()).endpoints[0]!.delivered === 30);
  assert.deepEqual(
    hook.events().map((e) => e.target.tag),
    Array.from({ length: 30 }, (_, i) => `t${i}`),
  );
  const after = (await notifier.stats()).endpoints[0]!;
  assert.equal(after.consecutiveFailures, 0);
  assert.equal(after.delivered, 30);
  assert.equal(after.depth, 0);
  assert.ok(logs.some((l) => l['msg'] === 'notification endpoint keeps failing; backing off'));
  assert.ok(logs.some((l) => l['msg'] === 'notification endpoint reachable again'));
});

void test('filters: repository patterns, ignored actions and ignored media types, per endpoint', async () => {
  const a = await receiver();
  const b = await receiver();
  const { notifier } = await startNotifier([
    { name: 'a', url: a.url, repositories: ['acme/**'], ignore: { actions: ['pull'] } },
    { name: 'b', url: b.url, ignoredMediaTypes: [layerType], ignore: { mediaTypes: [configType] } },
  ]);
  notifier.emit(input(1)); // a, b
  notifier.emit(input(2, { action: 'pull' })); // b
  notifier.emit(input(3, { kind: 'blob', mediaType: layerType })); // a
  notifier.emit(input(4, { kind: 'blob', mediaType: configType })); // a
  notifier.emit(input(5, { action: 'pull', repository: 'hub/library/alpine' })); // b
  notifier.emit(input(6, { action: 'delete' })); // a, b
  assert.equal(notifier.emit(input(7, { action: 'pull', repository: 'hub/library/alpine', mediaType: layerType })), undefined, 'nobody wants it');
  await a.waitForEvents(4);
  await b.waitForEvents(4);
  await notifier.flush();
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(a.events().map((e) => e.target.tag), ['t1', 't3', 't4', 't6']);
  assert.deepEqual(b.events().map((e) => e.target.tag), ['t1', 't2', 't5', 't6']);
});

void test('with a secret, X-Tender-Signature-256 verifies against the raw body', async () => {
  const hook = await receiver();
  const { notifier } = await startNotifier([{ name: 'signed', url: hook.url, secret: 'topsecret' }]);
  notifier.emit(input(1));
  await hook.waitForEvents(1);
  const post = hook.accepted()[0]!;
  const header = post.headers['x-tender-signature-256'];
  assert.equal(typeof header, 'string');
  assert.match(header as string, /^sha256=[0-9a-f]{64}$/);
  assert.equal(verifySignature(post.body, 'topsecret', header as string), true);
  assert.equal(verifySignature(post.body, 'wrong', header as string), false);
});

void test('a receiver that does not answer times out; the events are sent again', async () => {
  const hook = await receiver({ mode: 'hang' });
  const { notifier } = await startNotifier([{ name: 'slow', url: hook.url, timeout: '150ms', ...quick }]);
  const event = notifier.emit(input(1));
  await waitFor('a timed-out POST', async () => /timed out/.test((await notifier.stats()).endpoints[0]!.lastError ?? ''));
  hook.respond('ok');
  await hook.waitForEvents(1);
  assert.deepEqual(hook.events()[0], event);
  assert.ok(hook.attempts.length >= 2);
});

void test('redirects are not followed and count as failures', async () => {
  const hook = await receiver({ mode: 307 });
  const { notifier } = await startNotifier([{ name: 'moved', url: hook.url, ...quick }]);
  notifier.emit(input(1));
  await waitFor('a failed POST', async () => /HTTP 307/.test((await notifier.stats()).endpoints[0]!.lastError ?? ''));
  assert.equal((await notifier.stats()).endpoints[0]!.depth, 1);
});

void test('close waits for the POST in flight, then acknowledges it', async () => {
  const hook = await receiver({ mode: { delayMs: 300 } });
  const dataDir = await tempDir('notify');
  td.add(() => removeDir(dataDir));
  const { notifier } = await startNotifier([{ name: 'hook', url: hook.url, timeout: '5s' }], { dataDir });
  notifier.emit(input(1));
  await waitFor('the POST to start', async () => hook.attempts.length === 1);
  const started = Date.now();
  await notifier.close();
  assert.ok(Date.now() - started >= 150, 'close waited for the response');
  assert.equal(hook.accepted().length, 1);
  const queue = await FileQueue.open(join(dataDir, '_notify', 'hook'));
  assert.equal(await queue.depth(), 0, 'the delivered event was acknowledged before close returned');
  await queue.close();
});

void test('close is bounded: a hanging POST is aborted and its events stay queued', async () => {
  const hook = await receiver({ mode: 'hang' });
  const dataDir = await tempDir('notify');
  td.add(() => removeDir(dataDir));
  const { notifier } = await startNotifier([{ name: 'hook', url: hook.url, timeout: '30s' }], { dataDir });
  notifier.emit(input(1));
  await waitFor('the POST to start', async () => hook.attempts.length === 1);
  const started = Date.now();
  await notifier.close(300);
  assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms`);
  const queue = await FileQueue.open(join(dataDir, '_notify', 'hook'));
  assert.equal(await queue.depth(), 1);
  await queue.close();
});

const skipRedis = await redisSkip();

void test('redis queue: replicas sharing a prefix deliver every event once, in each replica order', { skip: skipRedis }, async () => {
  const hook = await receiver();
  const prefix = uniquePrefix('notify');
  td.add(() => deletePrefix(prefix));
  const endpoints = [{ name: 'hook', url: hook.url, ...quick }];
  const one = await startNotifier(endpoints, { queue: 'redis', redisUrl, redisPrefix: prefix });
  const two = await startNotifier(endpoints, { queue: 'redis', redisUrl, redisPrefix: prefix, instanceId: 'second' });
  for (let i = 0; i < 15; i++) {
    one.notifier.emit(input(i));
    two.notifier.emit(input(100 + i));
  }
  await hook.waitForEvents(30);
  await new Promise((r) => setTimeout(r, 300));
  const tags = hook.events().map((e) => Number(e.target.tag!.slice(1)));
  assert.equal(tags.length, 30, 'no duplicates');
  assert.deepEqual(tags.filter((n) => n < 100), Array.from({ length: 15 }, (_, i) => i));
  assert.deepEqual(tags.filter((n) => n >= 100), Array.from({ length: 15 }, (_, i) => 100 + i));
  assert.deepEqual(new Set(hook.events().map((e) => e.source.instanceID)), new Set(['test-instance', 'second']));
});
