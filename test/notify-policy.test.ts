import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { notificationsSchema } from '../src/notify/config.ts';
import { failureDelay, retryDelay, shouldDeliver, sign, verifySignature, type EndpointFilter } from '../src/notify/policy.ts';
import { sampleEvent } from './notify-queue-contract.ts';

void test('retryDelay doubles from backoff and stops at the cap', () => {
  const opts = { backoffMs: 100, maxMs: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => retryDelay(n, opts)), [100, 200, 400, 800, 1000, 1000]);
  assert.equal(retryDelay(0, opts), 100);
  assert.equal(retryDelay(10_000, opts), 1000, 'no overflow for huge attempt counts');
  assert.ok(Number.isFinite(retryDelay(10_000, { backoffMs: 1000, maxMs: Number.MAX_SAFE_INTEGER })));
});

void test('failureDelay retries quickly below the threshold, then backs off exponentially', () => {
  const opts = { threshold: 3, backoffMs: 1000, maxMs: 5000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => failureDelay(n, opts)), [100, 100, 1000, 2000, 4000, 5000]);
  assert.equal(failureDelay(1, { threshold: 1, backoffMs: 50, maxMs: 60 }), 50);
  assert.equal(failureDelay(1, { threshold: 5, backoffMs: 20, maxMs: 60 }), 20, 'quick retries never wait longer than the backoff');
});

const filter = (over: Partial<EndpointFilter> = {}): EndpointFilter => ({
  ignoredMediaTypes: [],
  ignore: { actions: [], mediaTypes: [] },
  repositories: ['**'],
  ...over,
});

void test('shouldDeliver: repository patterns, ignored actions and media types', () => {
  const push = sampleEvent(1, 'acme/team/app');
  const pull = { ...sampleEvent(2, 'hub/library/alpine'), action: 'pull' as const };
  assert.equal(shouldDeliver(push, filter()), true);
  assert.equal(shouldDeliver(push, filter({ repositories: ['acme/**'] })), true);
  assert.equal(shouldDeliver(push, filter({ repositories: ['acme/*'] })), false, '* stays within one component');
  assert.equal(shouldDeliver(pull, filter({ repositories: ['acme/**', 'hub/library/*'] })), true);
  assert.equal(shouldDeliver(pull, filter({ repositories: [] })), false);
  assert.equal(shouldDeliver(pull, filter({ ignore: { actions: ['pull'], mediaTypes: [] } })), false);
  assert.equal(shouldDeliver(push, filter({ ignore: { actions: ['pull'], mediaTypes: [] } })), true);
  const mt = push.target.mediaType!;
  assert.equal(shouldDeliver(push, filter({ ignoredMediaTypes: [mt] })), false);
  assert.equal(shouldDeliver(push, filter({ ignore: { actions: [], mediaTypes: [mt] } })), false);
  const deleted = { ...push, action: 'delete' as const, target: { repository: 'acme/app', digest: 'sha256:00' } };
  assert.equal(shouldDeliver(deleted, filter({ ignoredMediaTypes: [mt] })), true, 'targets without a media type are not filtered by it');
});

void test('sign: sha256=<hex HMAC-SHA256>, verified in constant time', () => {
  const body = '{"events":[]}';
  const expected = `sha256=${createHmac('sha256', 's3cret').update(body).digest('hex')}`;
  assert.equal(sign(body, 's3cret'), expected);
  assert.equal(sign(Buffer.from(body), 's3cret'), expected);
  assert.equal(verifySignature(body, 's3cret', expected), true);
  assert.equal(verifySignature(body, 'other', expected), false);
  assert.equal(verifySignature(`${body} `, 's3cret', expected), false);
  assert.equal(verifySignature(body, 's3cret', undefined), false);
  assert.equal(verifySignature(body, 's3cret', 'sha256=00'), false);
});

void test('config: defaults, durations, Distribution spellings, and errors by key', () => {
  const parsed = notificationsSchema.parse({ endpoints: [{ name: 'audit', url: 'https://hooks.example/x' }] });
  assert.equal(parsed.queue, 'file');
  assert.deepEqual(parsed.endpoints[0], {
    name: 'audit',
    url: 'https://hooks.example/x',
    disabled: false,
    headers: {},
    timeout: 1000,
    threshold: 10,
    backoff: 1000,
    maxBackoff: 60_000,
    batchSize: 10,
    ignoredMediaTypes: [],
    ignore: { actions: [], mediaTypes: [] },
    repositories: ['**'],
    mediaType: 'v1',
  });
  assert.deepEqual(notificationsSchema.parse({}), { queue: 'file', endpoints: [] });

  const distribution = notificationsSchema.parse({
    queue: 'redis',
    endpoints: [
      {
        name: 'alistener',
        url: 'http://127.0.0.1:9/event',
        headers: { Authorization: ['Bearer x'] },
        timeout: '500ms',
        threshold: 5,
        backoff: '1s',
        ignoredmediatypes: ['application/octet-stream'],
        ignore: { mediatypes: ['application/x'], actions: ['pull'] },
        secret: 'k',
        mediaType: 'v2',
      },
    ],
  }).endpoints[0]!;
  assert.equal(distribution.timeout, 500);
  assert.deepEqual(distribution.ignoredMediaTypes, ['application/octet-stream']);
  assert.deepEqual(distribution.ignore, { actions: ['pull'], mediaTypes: ['application/x'] });
  assert.deepEqual(distribution.headers, { Authorization: ['Bearer x'] });

  const bad = notificationsSchema.safeParse({
    endpoints: [{ name: 'a/b', url: 'ftp://x', timeout: 'soon', ignore: { actions: ['tag'] }, mediaType: 'v3', extra: 1 }],
  });
  assert.equal(bad.success, false);
  const paths = bad.error!.issues.map((i) => i.path.join('.')).sort();
  assert.deepEqual(paths, ['endpoints.0', 'endpoints.0.ignore.actions.0', 'endpoints.0.mediaType', 'endpoints.0.name', 'endpoints.0.timeout', 'endpoints.0.url']);

  const dup = notificationsSchema.safeParse({ endpoints: [{ name: 'a', url: 'http://x/' }, { name: 'a', url: 'http://y/' }] });
  assert.deepEqual(dup.error?.issues.map((i) => [i.path.join('.'), i.message]), [['endpoints.1.name', 'duplicate endpoint name "a"']]);
});

void test('config: header names and values are checked', () => {
  const bad = notificationsSchema.safeParse({ endpoints: [{ name: 'a', url: 'http://x/', headers: { 'Bad Name': 'v', Ok: 'a\r\nInjected: 1', List: ['x', 'y\n'] } }] });
  assert.deepEqual(bad.error?.issues.map((i) => i.path.join('.')).sort(), ['endpoints.0.headers.Bad Name', 'endpoints.0.headers.List.1', 'endpoints.0.headers.Ok']);
});
