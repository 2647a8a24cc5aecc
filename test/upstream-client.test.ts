/**
 * The upstream client against a real CNCF Distribution with Bearer token auth,
 * behind the counting proxy so every request to the registry is counted.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { configSchema, type UpstreamConfig } from '../src/config/schema.ts';
import type { MetaStore } from '../src/meta/meta.ts';
import { MediaTypes } from '../src/registry/mediatypes.ts';
import { createUpstream, type UpstreamClient } from '../src/upstream/client.ts';
import { UpstreamError, type UpstreamErrorCode } from '../src/upstream/types.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, type BuiltImage } from './helpers/images.ts';
import { removeDir, skipUnlessTools, teardown } from './helpers/tools.ts';
import { toReadable } from '../src/upstream/body.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const td = teardown();
after(() => td.run());

/** A tiny MetaStore on a Map (expiry by wall clock), standing in for memory/Redis. */
function mapMeta(): MetaStore {
  const data = new Map<string, { value: unknown; until: number }>();
  return {
    get: <T>(key: string) => {
      const e = data.get(key);
      return Promise.resolve(e && e.until > Date.now() ? (e.value as T) : undefined);
    },
    set: (key, value, ttlMs) => {
      data.set(key, { value, until: ttlMs ? Date.now() + ttlMs : Infinity });
      return Promise.resolve();
    },
    delete: (key) => Promise.resolve(data.delete(key)),
    close: () => Promise.resolve(),
  };
}

function upstreamConfig(url: string, extra: Partial<Record<string, unknown>> = {}): UpstreamConfig {
  const config = configSchema.parse({
    upstreams: { up: { url, retries: 2, timeouts: { connect: '2s', response: '5s', idle: '5s', blob: '60s' }, ...extra } },
  });
  return config.upstreams.up!;
}

async function expectCode(promise: Promise<unknown>, code: UpstreamErrorCode): Promise<UpstreamError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof UpstreamError, `expected UpstreamError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the call succeeded`);
}

async function sha256Of(stream: NodeJS.ReadableStream): Promise<{ digest: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  await pipeline(
    stream,
    new Writable({
      write(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        bytes += chunk.length;
        cb();
      },
    }),
  );
  return { digest: `sha256:${hash.digest('hex')}`, bytes };
}

const MANIFESTS = /\/manifests\//;

void describe('upstream client against token-auth Distribution', { skip }, () => {
  let registry: DistributionUpstream;
  let proxy: CountingProxy;
  let image: BuiltImage;
  let appDigest: string;
  let otherDigest: string;
  const clients: UpstreamClient[] = [];

  /** A fresh client (empty token cache, no known challenge) on the counting proxy. */
  function client(extra: Partial<Record<string, unknown>> = {}, maxManifestSize = 4 * 1024 * 1024): UpstreamClient {
    const c = createUpstream('up', upstreamConfig(proxy.url, extra), { meta: mapMeta(), logger: pino({ level: 'silent' }), maxManifestSize });
    clients.push(c);
    return c;
  }

  before(async () => {
    registry = await startDistribution({ auth: 'token' });
    td.add(() => registry.stop());
    proxy = await startCountingProxy(registry.url);
    td.add(() => proxy.stop());
    td.add(() => clients.forEach((c) => c.close()));
    image = await buildImage({ layerSizes: [200_000, 3_000_000] });
    td.add(() => removeDir(image.layoutDir));
    appDigest = (await pushImage(image, registry, 'team/app:1')).manifestDigest;
    otherDigest = (await pushImage(image, registry, 'team/other:1', { format: 'v2s2' })).manifestDigest;
  });

  const issued = (): number => registry.issuer!.tokensIssued();

  void it('negotiates a token on the first 401 and then succeeds', async () => {
    const c = client();
    proxy.reset();
    const before = issued();
    const head = await c.headManifest('team/app', '1');
    assert.equal(head.digest, appDigest);
    assert.equal(head.mediaType, MediaTypes.ociManifest);
    assert.equal(head.size, image.manifestSize);
    assert.deepEqual(
      proxy.requests.map((r) => [r.method, r.status]),
      [
        ['HEAD', 401],
        ['HEAD', 200],
      ],
    );
    assert.equal(issued() - before, 1);
    assert.equal(c.stats().tokenFetches, 1);
    assert.equal(c.stats().requests, 2);
  });

  void it('20 concurrent manifest GETs of one repository cause one token fetch', async () => {
    const c = client();
    const before = issued();
    const results = await Promise.all(Array.from({ length: 20 }, () => c.getManifest('team/app', '1')));
    assert.ok(results.every((r) => r.digest === appDigest));
    assert.equal(issued() - before, 1);
    assert.equal(c.stats().tokenFetches, 1);
  });

  void it('a second repository gets its token before its first request (no extra 401)', async () => {
    const c = client();
    await c.headManifest('team/app', '1');
    proxy.reset();
    const before = issued();
    const m = await c.getManifest('team/other', '1');
    assert.equal(m.digest, otherDigest);
    assert.equal(m.mediaType, MediaTypes.dockerManifest);
    assert.equal(issued() - before, 1);
    assert.equal(proxy.count({ path: MANIFESTS }), 1);
    assert.equal(proxy.requests.filter((r) => r.status === 401).length, 0);
    assert.equal(c.stats().tokenFetches, 2);
    // And a cached token is reused: no token fetch, no 401.
    await c.getManifest('team/other', '1');
    assert.equal(issued() - before, 1);
    assert.equal(proxy.requests.filter((r) => r.status === 401).length, 0);
  });

  void it('GET by digest verifies the body against the digest', async () => {
    const c = client();
    const m = await c.getManifest('team/app', appDigest);
    assert.equal(m.digest, appDigest);
    assert.equal(m.size, image.manifestSize);
    assert.equal(`sha256:${createHash('sha256').update(m.body).digest('hex')}`, appDigest);
    assert.equal((JSON.parse(m.body.toString()) as { config: { digest: string } }).config.digest, image.configDigest);
  });

  void it('a corrupted manifest is refused as INVALID, by digest and by tag', async () => {
    const c = client();
    await c.headManifest('team/app', '1');
    proxy.fault = (req) => (req.method === 'GET' && MANIFESTS.test(req.path) ? { kind: 'corrupt' } : undefined);
    try {
      await expectCode(c.getManifest('team/app', appDigest), 'INVALID');
      await expectCode(c.getManifest('team/app', '1'), 'INVALID');
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('streams a blob whose digest and size match', async () => {
    const c = client();
    for (const layer of image.layers) {
      const blob = await c.getBlob('team/app', layer.digest);
      assert.equal(blob.size, layer.size);
      assert.deepEqual(await sha256Of(toReadable(blob.body)), { digest: layer.digest, bytes: layer.size });
      assert.deepEqual(await c.headBlob('team/app', layer.digest), { size: layer.size });
    }
  });

  void it('a truncated blob errors the stream with UNAVAILABLE', async () => {
    const c = client();
    const layer = image.layers[1]!;
    proxy.fault = (req) => (req.method === 'GET' && req.path.endsWith(layer.digest) ? { kind: 'truncate' } : undefined);
    try {
      const blob = await c.getBlob('team/app', layer.digest);
      const err = await sha256Of(toReadable(blob.body)).then(
        () => undefined,
        (e: unknown) => e,
      );
      assert.ok(err instanceof UpstreamError && err.code === 'UNAVAILABLE', String(err));
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('404 is NOT_FOUND, without retries', async () => {
    const c = client();
    await c.headManifest('team/app', '1');
    proxy.reset();
    await expectCode(c.getManifest('team/app', 'nope'), 'NOT_FOUND');
    await expectCode(c.headManifest('team/app', 'nope'), 'NOT_FOUND');
    await expectCode(c.getBlob('team/app', `sha256:${'0'.repeat(64)}`), 'NOT_FOUND');
    await expectCode(c.headBlob('team/app', `sha256:${'0'.repeat(64)}`), 'NOT_FOUND');
    assert.equal(proxy.requests.length, 4);
  });

  void it('503 is retried config.retries times, then UNAVAILABLE', async () => {
    const c = client({ retries: 2 });
    await c.headManifest('team/app', '1');
    proxy.reset();
    proxy.fault = () => ({ kind: 'status', status: 503 });
    try {
      const err = await expectCode(c.getManifest('team/app', '1'), 'UNAVAILABLE');
      assert.equal(err.status, 503);
      assert.equal(proxy.count({ method: 'GET', path: MANIFESTS }), 3);
      proxy.reset();
      await expectCode(c.getBlob('team/app', image.layers[0]!.digest), 'UNAVAILABLE');
      assert.equal(proxy.count({ method: 'GET' }), 3);
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('recovers when a retry succeeds', async () => {
    const c = client({ retries: 2 });
    await c.headManifest('team/app', '1');
    proxy.reset();
    let failures = 1;
    proxy.fault = () => (failures-- > 0 ? { kind: 'status', status: 502 } : undefined);
    try {
      assert.equal((await c.getManifest('team/app', '1')).digest, appDigest);
      assert.equal(proxy.count({ method: 'GET', path: MANIFESTS }), 2);
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('429 is TOO_MANY_REQUESTS with Retry-After and is not retried', async () => {
    const c = client({ retries: 2 });
    await c.headManifest('team/app', '1');
    proxy.reset();
    proxy.fault = () => ({ kind: 'status', status: 429 });
    try {
      const err = await expectCode(c.headManifest('team/app', '1'), 'TOO_MANY_REQUESTS');
      assert.equal(err.retryAfter, 1);
      assert.equal(err.allowsStale, true);
      assert.equal(proxy.requests.length, 1);
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('an offline upstream is UNAVAILABLE', async () => {
    const c = client({ retries: 1 });
    proxy.fault = () => ({ kind: 'offline' });
    try {
      const err = await expectCode(c.getManifest('team/app', '1'), 'UNAVAILABLE');
      assert.match(err.message, /upstream up: GET http:\/\/127\.0\.0\.1:\d+\/v2\/team\/app\/manifests\/1/);
      await expectCode(c.getBlob('team/app', image.layers[0]!.digest), 'UNAVAILABLE');
    } finally {
      proxy.fault = undefined;
    }
  });

  void it('a manifest over maxManifestSize is INVALID', async () => {
    const c = client({}, 100);
    await expectCode(c.getManifest('team/app', '1'), 'INVALID');
    await expectCode(c.getManifest('team/app', appDigest), 'INVALID');
  });

  void it('lists tags', async () => {
    await pushImage(image, registry, 'team/app:2');
    const c = client();
    assert.deepEqual((await c.listTags('team/app')).sort(), ['1', '2']);
    await expectCode(c.listTags('team/none'), 'NOT_FOUND');
  });
});
