/**
 * The cache lifecycle as wired into the server: pulls record access times
 * (surviving a restart), the eviction schedule keeps the budget in LRU order
 * with the server's own pins, the warm list is fetched at start, and the
 * quota guard is configured per upstream.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { planEviction } from '../src/cache/eviction-plan.ts';
import { scanCache } from '../src/cache/inventory.ts';
import { configSchema, type ConfigInput } from '../src/config/schema.ts';
import { createLogger } from '../src/log.ts';
import { startServer, type RunningServer } from '../src/server.ts';
import { cacheRepo } from '../src/store/layout.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, type BuiltImage } from './helpers/images.ts';
import { removeDir, skipUnlessTools, teardown, tempDir, waitFor } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const blobGets = (digest: string) => ({ method: 'GET', path: new RegExp(`/blobs/${digest}$`) });

describe('cache lifecycle wired into the server', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let root: string;
  const images = new Map<string, { image: BuiltImage; digest: string }>();

  async function start(extra: Partial<ConfigInput> = {}): Promise<RunningServer> {
    const config = configSchema.parse({
      server: { host: '127.0.0.1', port: 0, shutdownTimeout: '5s' },
      ops: { enabled: false },
      storage: { filesystem: { root } },
      proxy: { defaultUpstream: 'hub' },
      upstreams: { hub: { url: proxy.url, dockerHub: true, tagTtl: '1h' } },
      log: { level: 'silent' },
      ...extra,
    } satisfies ConfigInput);
    const logger = createLogger({ level: 'silent', destination: new Writable({ write: (_c, _e, cb) => cb() }) });
    return startServer(config, logger);
  }
  async function pull(server: RunningServer, name: string): Promise<string> {
    const r = await skopeoPull(`127.0.0.1:${server.port}/hub/library/${name}:1`);
    await removeDir(r.dir);
    return r.manifestDigest;
  }

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    root = await tempDir('wired');
    td.add(() => removeDir(root));
    for (const name of ['a', 'b', 'c', 'warm', 'big']) {
      const image = await buildImage({ layerSizes: name === 'big' ? [6 * 1024 * 1024] : [200 * 1024] });
      td.add(() => removeDir(image.layoutDir));
      images.set(name, { image, digest: (await pushImage(image, upstream, `library/${name}:1`)).manifestDigest });
    }
  });
  after(() => td.run());

  test('pulls record access times, which survive a restart', async () => {
    const server = await start();
    try {
      for (const name of ['a', 'b', 'c']) assert.equal(await pull(server, name), images.get(name)!.digest);
      await pull(server, 'a');
      const at = (n: string) => server.accessTimes.manifestAccess(cacheRepo('hub', `library/${n}`), images.get(n)!.digest)!;
      assert.ok(at('a') > at('c') && at('c') > at('b'), 'a was used last, b first');
      assert.ok(server.accessTimes.blobAccess(cacheRepo('hub', 'library/a'), images.get('a')!.image.layers[0]!.digest));
    } finally {
      await server.close();
    }
    const again = await start();
    try {
      assert.ok(again.accessTimes.manifestAccess(cacheRepo('hub', 'library/a'), images.get('a')!.digest));
      assert.equal(again.eviction, undefined, 'no budget, no schedule');
    } finally {
      await again.close();
    }
  });

  test('the eviction schedule keeps the budget, least recently used first', async () => {
    const server = await start({ cache: { budget: '300KiB', evictInterval: '1h' } });
    try {
      const result = await server.eviction!.runNow();
      assert.deepEqual(
        result.evicted.map((e) => e.repo),
        [cacheRepo('hub', 'library/b'), cacheRepo('hub', 'library/c')],
      );
      const inv = await scanCache(server.store, server.accessTimes);
      const units = inv.units.map((u) => ({ id: u.id, lastAccess: u.lastAccess, refs: [...u.manifests, ...u.blobs] }));
      assert.ok(planEviction({ units, sizes: inv.sizes, local: inv.local, now: Date.now() }).bytesBefore <= 300 * 1024);
      proxy.reset();
      assert.equal(await pull(server, 'b'), images.get('b')!.digest);
      assert.equal(proxy.count(blobGets(images.get('b')!.image.layers[0]!.digest)), 1, 'b fetched again');
    } finally {
      await server.close();
    }
  });

  test('pulls during eviction with the server pins all succeed', async () => {
    const server = await start({ cache: { budget: 0, evictInterval: '1h' } });
    try {
      // Sampled while pulls run: over three rounds at least one sample sees a pin.
      let sawPinned = false;
      for (let round = 0; round < 3; round++) {
        let done = false;
        const names = ['a', 'b', 'c', 'big'];
        const pulls = Promise.all(names.map((n) => pull(server, n))).finally(() => (done = true));
        while (!done) {
          if (server.pins.size > 0) sawPinned = true;
          await server.eviction!.runNow();
          await new Promise((r) => setTimeout(r, 5));
        }
        (await pulls).forEach((d, i) => assert.equal(d, images.get(names[i]!)!.digest));
      }
      assert.ok(sawPinned, 'blobs were pinned while served');
    } finally {
      await server.close();
    }
  });

  test('the warm list is fetched at start', async () => {
    proxy.reset();
    const server = await start({ warm: { images: ['hub/library/warm:1'], interval: '1h' } });
    try {
      const layer = images.get('warm')!.image.layers[0]!.digest;
      await waitFor('warm blob fetched', async () => (await server.store.statBlob(layer)) !== undefined, 15_000);
      assert.equal(proxy.count(blobGets(layer)), 1);
    } finally {
      await server.close();
    }
  });

  test('the quota guard and cache keys are validated by the config schema', () => {
    assert.equal(configSchema.parse({ upstreams: { hub: { url: 'https://x.example', quotaGuard: 10 } } }).upstreams.hub!.quotaGuard, 10);
    assert.throws(() => configSchema.parse({ warm: { platforms: ['amd64'] } }));
    assert.equal(configSchema.parse({ cache: { budget: '10GB', maxUnused: '30d' } }).cache.maxUnused, 30 * 86_400_000);
  });
});
