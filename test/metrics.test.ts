import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { register as globalRegistry } from 'prom-client';
import { createLogger } from '../src/log.ts';
import { Metrics, cacheResultOf, routeLabel } from '../src/metrics/metrics.ts';
import { httpProbe, readinessChecks, startOpsServer, type ReadyReport } from '../src/metrics/ops-server.ts';
import { parsePrometheus, promKey } from './helpers/prometheus.ts';

const logger = createLogger({ level: 'silent' });

async function withOps<T>(
  opts: { metrics?: Metrics; ready?: () => Promise<ReadyReport> },
  body: (url: string, metrics: Metrics) => Promise<T>,
): Promise<T> {
  const metrics = opts.metrics ?? new Metrics();
  const ops = await startOpsServer({
    host: '127.0.0.1',
    port: 0,
    metrics,
    ready: opts.ready ?? (async () => ({ checks: [] })),
    logger,
  });
  try {
    return await body(ops.url, metrics);
  } finally {
    await ops.close();
  }
}

async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parsePrometheus(await res.text());
}

async function readyz(url: string): Promise<{ status: number; body: { ready: boolean; checks: ReadyReport['checks'] } }> {
  const res = await fetch(`${url}/readyz`);
  assert.equal(res.headers.get('content-type'), 'application/json');
  return { status: res.status, body: (await res.json()) as { ready: boolean; checks: ReadyReport['checks'] } };
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<string> {
  const server = createServer();
  const url = await listen(server);
  await new Promise((resolve) => server.close(resolve));
  return url;
}

async function tempRoot(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tender-metrics-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

void test('/metrics serves every instrument with exact values and labels', async () => {
  await withOps({}, async (url, m) => {
    m.httpRequest('manifest', 'GET', 200, 0.004);
    m.httpRequest('manifest', 'GET', 200, 0.02);
    m.httpRequest('blob', 'HEAD', 404, 0.0005);
    m.httpRequest('other', 'BREW', 418, 1);
    m.httpRequest('other', 'GET', 42, -1);
    m.cacheRequest('manifest', 'hit');
    m.cacheRequest('manifest', 'hit');
    m.cacheRequest('blob', cacheResultOf('upstream'));
    m.cacheRequest('blob', cacheResultOf('inflight'));
    m.served('cache', 1000);
    m.served('cache', 24);
    m.served('upstream', 5);
    m.served('local', -3);
    m.upstreamFetched('hub', 4096);
    m.upstreamRequest('hub', 'GET', 200, 0.3);
    m.upstreamRequest('hub', 'HEAD', 429, 0.02);
    m.upstreamRequest('ghcr', 'GET', 0, 0.01);
    m.upstreamError('hub', 'TOOMANYREQUESTS');
    m.tokenFetch('hub');
    m.tokenFetch('hub', 2);
    m.setRateLimit('hub', 100, 76);
    m.setInflightFetches(3);
    m.setInflightWaiters(7);
    m.setStorageBytes('cached', 123456);
    m.setStorageBytes('local', 42);
    m.setNotificationQueueDepth('audit', 5);
    m.notificationDelivered('audit');
    m.notificationDelivered('audit', 2);
    m.notificationFailed('audit');

    const s = await scrape(url);
    const v = (name: string, labels?: Record<string, string>): number | undefined => s.get(promKey(`tender_${name}`, labels));

    assert.equal(v('http_requests_total', { route: 'manifest', method: 'GET', status: '200' }), 2);
    assert.equal(v('http_requests_total', { route: 'blob', method: 'HEAD', status: '404' }), 1);
    assert.equal(v('http_requests_total', { route: 'other', method: 'other', status: '418' }), 1, 'unknown methods fold to other');
    assert.equal(v('http_requests_total', { route: 'other', method: 'GET', status: 'other' }), 1, 'odd statuses fold to other');
    assert.equal(v('http_request_duration_seconds_count', { route: 'manifest', method: 'GET' }), 2);
    assert.ok(Math.abs(v('http_request_duration_seconds_sum', { route: 'manifest', method: 'GET' })! - 0.024) < 1e-9);
    assert.equal(v('http_request_duration_seconds_bucket', { route: 'manifest', method: 'GET', le: '0.005' }), 1);
    assert.equal(v('http_request_duration_seconds_bucket', { route: 'manifest', method: 'GET', le: '0.025' }), 2);
    assert.equal(v('http_request_duration_seconds_bucket', { route: 'manifest', method: 'GET', le: '+Inf' }), 2);
    assert.equal(v('http_request_duration_seconds_count', { route: 'other', method: 'GET' }), undefined, 'negative durations are not observed');

    assert.equal(v('cache_requests_total', { kind: 'manifest', result: 'hit' }), 2);
    assert.equal(v('cache_requests_total', { kind: 'blob', result: 'miss' }), 1);
    assert.equal(v('cache_requests_total', { kind: 'blob', result: 'inflight' }), 1);
    assert.equal(v('cache_requests_total', { kind: 'manifest', result: 'stale' }), 0, 'bounded label sets start at zero');
    assert.equal([...s.keys()].filter((k) => k.startsWith('tender_cache_requests_total{')).length, 12);

    assert.equal(v('bytes_served_total', { source: 'cache' }), 1024);
    assert.equal(v('bytes_served_total', { source: 'upstream' }), 5);
    assert.equal(v('bytes_served_total', { source: 'local' }), 0);
    assert.equal(v('upstream_bytes_fetched_total', { upstream: 'hub' }), 4096);

    assert.equal(v('upstream_requests_total', { upstream: 'hub', method: 'GET', status: '200' }), 1);
    assert.equal(v('upstream_requests_total', { upstream: 'hub', method: 'HEAD', status: '429' }), 1);
    assert.equal(v('upstream_requests_total', { upstream: 'ghcr', method: 'GET', status: 'other' }), 1);
    assert.equal(v('upstream_request_duration_seconds_count', { upstream: 'hub' }), 2);
    assert.equal(v('upstream_request_duration_seconds_bucket', { upstream: 'hub', le: '0.025' }), 1);
    assert.equal(v('upstream_errors_total', { upstream: 'hub', code: 'TOOMANYREQUESTS' }), 1);
    assert.equal(v('upstream_token_fetches_total', { upstream: 'hub' }), 3);
    assert.equal(v('upstream_ratelimit_limit', { upstream: 'hub' }), 100);
    assert.equal(v('upstream_ratelimit_remaining', { upstream: 'hub' }), 76);

    assert.equal(v('inflight_fetches'), 3);
    assert.equal(v('inflight_waiters'), 7);
    assert.equal(v('storage_bytes', { kind: 'cached' }), 123456);
    assert.equal(v('storage_bytes', { kind: 'local' }), 42);
    assert.equal(v('notification_queue_depth', { endpoint: 'audit' }), 5);
    assert.equal(v('notification_deliveries_total', { endpoint: 'audit' }), 3);
    assert.equal(v('notification_failures_total', { endpoint: 'audit' }), 1);

    assert.ok(s.has('process_cpu_user_seconds_total'), 'default process metrics are collected');
    assert.ok(s.has('nodejs_heap_size_total_bytes'));
  });
});

void test('onCollect callbacks refresh gauges at scrape time; a failing one does not fail the scrape', async () => {
  const errors: unknown[] = [];
  const metrics = new Metrics({ defaultMetrics: false, onCollectError: (err) => errors.push(err) });
  let depth = 0;
  metrics.onCollect(() => metrics.setNotificationQueueDepth('hook', ++depth));
  metrics.onCollect(async () => {
    await new Promise((r) => setTimeout(r, 10));
    metrics.setRateLimit('hub', 200, 150 - depth);
  });
  metrics.onCollect(() => {
    throw new Error('collector broke');
  });
  await withOps({ metrics }, async (url) => {
    let s = await scrape(url);
    assert.equal(s.get('tender_notification_queue_depth{endpoint="hook"}'), 1);
    assert.equal(s.get('tender_upstream_ratelimit_remaining{upstream="hub"}'), 149);
    s = await scrape(url);
    assert.equal(s.get('tender_notification_queue_depth{endpoint="hook"}'), 2);
    assert.equal(s.get('tender_upstream_ratelimit_remaining{upstream="hub"}'), 148);
    assert.equal(s.has('process_cpu_user_seconds_total'), false, 'default metrics can be turned off');
  });
  assert.equal(errors.length, 2);
  assert.equal((errors[0] as Error).message, 'collector broke');
});

void test('each Metrics has its own registry, never the global one', async () => {
  const a = new Metrics({ defaultMetrics: false });
  const b = new Metrics({ defaultMetrics: false });
  a.cacheRequest('blob', 'hit');
  assert.equal(parsePrometheus(await a.text()).get('tender_cache_requests_total{kind="blob",result="hit"}'), 1);
  assert.equal(parsePrometheus(await b.text()).get('tender_cache_requests_total{kind="blob",result="hit"}'), 0);
  assert.equal(globalRegistry.getSingleMetric('tender_cache_requests_total'), undefined);
  assert.equal(a.contentType, a.registry.contentType);
});

void test('/healthz answers ok; unknown paths 404; other methods 405', async () => {
  await withOps({}, async (url) => {
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok');
    const head = await fetch(`${url}/healthz?probe=1`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal((await fetch(`${url}/nope`)).status, 404);
    assert.equal((await fetch(`${url}/v2/`)).status, 404);
    const post = await fetch(`${url}/metrics`, { method: 'POST' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD');
  });
});

void test('/readyz is 200 with writable storage and leaves nothing behind', async (t) => {
  const root = await tempRoot(t);
  let pings = 0;
  const ready = readinessChecks({ storageRoot: root, redis: { ping: async () => void pings++ }, upstreams: [] });
  await withOps({ ready }, async (url) => {
    const { status, body } = await readyz(url);
    assert.equal(status, 200);
    assert.equal(body.ready, true);
    assert.deepEqual(
      body.checks.map((c) => [c.name, c.ok, c.critical, c.detail]),
      [
        ['storage', true, true, 'ok'],
        ['redis', true, true, 'ok'],
      ],
    );
    assert.equal(pings, 1);
    assert.deepEqual(await readdir(join(root, '_tmp')), []);
  });
});

void test('/readyz is 503 when the storage root is not writable', async (t) => {
  const dir = await tempRoot(t);
  const file = join(dir, 'a-file');
  await writeFile(file, 'x');
  const ready = readinessChecks({ storageRoot: join(file, 'data'), upstreams: [] });
  await withOps({ ready }, async (url) => {
    const { status, body } = await readyz(url);
    assert.equal(status, 503);
    assert.equal(body.ready, false);
    const storage = body.checks.find((c) => c.name === 'storage')!;
    assert.equal(storage.ok, false);
    assert.equal(storage.critical, true);
    assert.match(storage.detail, /^ENOTDIR/);
  });
});

void test('/readyz is 503 when Redis fails or does not answer in time', async (t) => {
  const root = await tempRoot(t);
  const failing = readinessChecks({
    storageRoot: root,
    redis: { ping: () => Promise.reject(Object.assign(new Error('connect ECONNREFUSED redis://:secret@127.0.0.1:6379'), { code: 'ECONNREFUSED' })) },
    upstreams: [],
  });
  await withOps({ ready: failing }, async (url) => {
    const { status, body } = await readyz(url);
    assert.equal(status, 503);
    const redis = body.checks.find((c) => c.name === 'redis')!;
    assert.equal(redis.ok, false);
    assert.match(redis.detail, /^ECONNREFUSED: /);
    assert.ok(!redis.detail.includes('secret'), redis.detail);
  });

  const hanging = readinessChecks({ storageRoot: root, redis: { ping: () => new Promise(() => {}) }, upstreams: [], timeoutMs: 100 });
  await withOps({ ready: hanging }, async (url) => {
    const started = Date.now();
    const { status, body } = await readyz(url);
    assert.ok(Date.now() - started < 1500, 'the check is bounded');
    assert.equal(status, 503);
    assert.match(body.checks.find((c) => c.name === 'redis')!.detail, /^TIMEOUT: no answer within 100 ms/);
  });
});

void test('/readyz stays 200 with an unreachable or hanging upstream, reported as not ok', async (t) => {
  const root = await tempRoot(t);
  let seen: string | undefined;
  const answering = createServer((req, res) => {
    seen = `${req.method} ${req.url} ${req.headers.authorization ?? '-'}`;
    res.writeHead(401, { 'www-authenticate': 'Bearer realm="x"' }).end();
  });
  const hanging = createServer(() => {});
  const answeringUrl = await listen(answering);
  const hangingUrl = await listen(hanging);
  t.after(() => {
    answering.close();
    hanging.closeAllConnections();
    hanging.close();
  });
  const ready = readinessChecks({
    storageRoot: root,
    upstreams: [
      { name: 'hub', probe: httpProbe(answeringUrl.replace('http://', 'http://user:pw@')) },
      { name: 'down', probe: httpProbe(await closedPort()) },
      { name: 'slow', probe: httpProbe(`${hangingUrl}/`) },
    ],
    upstreamTimeoutMs: 200,
  });
  await withOps({ ready }, async (url) => {
    const { status, body } = await readyz(url);
    assert.equal(status, 200);
    assert.equal(body.ready, true);
    const byName = new Map(body.checks.map((c) => [c.name, c]));
    assert.equal(byName.get('upstream:hub')!.ok, true, 'a 401 from /v2/ counts as reachable');
    assert.equal(seen, 'GET /v2/ -', 'credentials in the URL are not sent');
    assert.equal(byName.get('upstream:down')!.ok, false);
    assert.equal(byName.get('upstream:down')!.critical, false);
    assert.match(byName.get('upstream:down')!.detail, /^ECONNREFUSED/);
    assert.equal(byName.get('upstream:slow')!.ok, false);
    assert.match(byName.get('upstream:slow')!.detail, /^TIMEOUT/);
  });
});

void test('concurrent readiness probes share one run', async (t) => {
  const root = await tempRoot(t);
  let pings = 0;
  const ready = readinessChecks({
    storageRoot: root,
    redis: { ping: () => new Promise((r) => setTimeout(() => r(void pings++), 50)) },
    upstreams: [],
  });
  const reports = await Promise.all([ready(), ready(), ready()]);
  assert.equal(pings, 1);
  assert.equal(reports[0], reports[2]);
  await ready();
  assert.equal(pings, 2, 'a later probe runs the checks again');
});

void test('a readiness function that throws makes /readyz 503', async () => {
  await withOps({ ready: () => Promise.reject(new Error('boom')) }, async (url) => {
    const { status, body } = await readyz(url);
    assert.equal(status, 503);
    assert.deepEqual(body.checks.map((c) => [c.name, c.ok]), [['readiness', false]]);
  });
});

void test('routeLabel maps request paths to the fixed route set', () => {
  const cases: Array<[string, string]> = [
    ['/v2/', 'base'],
    ['/v2', 'base'],
    ['/v2/_catalog?n=10', 'catalog'],
    ['/v2/hub/library/nginx/manifests/latest', 'manifest'],
    ['/v2/nginx/manifests/sha256:abc?ns=docker.io', 'manifest'],
    ['/v2/acme/app/blobs/sha256:abc', 'blob'],
    ['/v2/acme/app/blobs/uploads/', 'upload'],
    ['/v2/acme/app/blobs/uploads/0f1e-uuid?digest=sha256:abc', 'upload'],
    ['/v2/acme/app/tags/list?n=5&last=a', 'tags'],
    ['/v2/acme/app/referrers/sha256:abc?artifactType=x', 'referrers'],
    ['/v2/blobs/manifests/latest', 'manifest'],
    ['/v2/acme/app', 'other'],
    ['/v2/acme/app/manifests/', 'other'],
    ['/metrics', 'other'],
    ['/', 'other'],
    ['/v20/x/manifests/latest', 'other'],
    ['', 'other'],
  ];
  for (const [path, route] of cases) assert.equal(routeLabel(path), route, path);
});

void test('parsePrometheus sorts labels and unescapes values', () => {
  const s = parsePrometheus(
    [
      '# HELP x_total help',
      '# TYPE x_total counter',
      'x_total{b="2",a="quote \\" slash \\\\ nl \\n"} 3',
      'y 1.5e3 1700000000000',
      'z_bucket{le="+Inf"} +Inf',
    ].join('\n'),
  );
  assert.equal(s.get('x_total{a="quote " slash \\ nl \n",b="2"}'), 3);
  assert.equal(s.get('y'), 1500);
  assert.equal(s.get('z_bucket{le="+Inf"}'), Infinity);
});
