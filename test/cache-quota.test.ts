/**
 * The quota guard: the pure rule, the guard over upstream clients' stats,
 * and the pull-through manifest service against a real Distribution whose
 * manifest responses carry Docker Hub's rate-limit headers (added by a small
 * wrapper in front of the counting proxy). While few pulls remain, a stale
 * cached tag is served without any upstream request until the window resets.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createQuotaGuard, quotaGuardActive } from '../src/cache/quota.ts';
import { configSchema } from '../src/config/schema.ts';
import { createLogger } from '../src/log.ts';
import { MemoryMeta } from '../src/meta/memory.ts';
import { ProxyManifests } from '../src/proxy/manifests.ts';
import { resolveRoute, type UpstreamRoute } from '../src/routing.ts';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { ContentStore } from '../src/store/content-store.ts';
import { createUpstream } from '../src/upstream/client.ts';
import type { RateLimit } from '../src/upstream/ratelimit.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage } from './helpers/images.ts';
import { removeDir, skipUnlessTools, teardown, tempDir } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const hour = 3_600_000;

describe('quota guard rule', () => {
  const low = { limit: 100, remaining: 3, windowSeconds: 21_600 };

  test('on below the threshold, until the window since the observation ends', () => {
    assert.equal(quotaGuardActive(low, 5, 0, 1000), true);
    assert.equal(quotaGuardActive(low, 5, 0, 6 * hour - 1), true);
    assert.equal(quotaGuardActive(low, 5, 0, 6 * hour), false, 'the window reset');
  });

  test('off at or above the threshold, with threshold 0, or without rate-limit headers', () => {
    assert.equal(quotaGuardActive({ ...low, remaining: 5 }, 5, 0, 1), false);
    assert.equal(quotaGuardActive(low, 0, 0, 1), false);
    assert.equal(quotaGuardActive(undefined, 5, 0, 1), false);
  });

  test("a quota without a window is taken to last Docker Hub's 6 hours", () => {
    assert.equal(quotaGuardActive({ ...low, windowSeconds: undefined }, 5, 0, 6 * hour - 1), true);
    assert.equal(quotaGuardActive({ ...low, windowSeconds: undefined }, 5, 0, 6 * hour), false);
  });

  test('the guard dates an observation from when its value changed, per upstream', () => {
    let now = 0;
    let hub: (RateLimit & { observedAt?: number }) | undefined = { limit: 100, remaining: 50, windowSeconds: 60 };
    const other = { limit: 100, remaining: 1, windowSeconds: 60, observedAt: 0 };
    const guard = createQuotaGuard({
      upstreams: new Map([
        ['hub', { stats: () => (hub ? { rateLimit: hub } : {}) }],
        ['other', { stats: () => ({ rateLimit: other }) }],
      ]),
      threshold: (u) => (u === 'off' ? 0 : 5),
      now: () => now,
    });
    assert.equal(guard('hub'), false);
    now = 10_000;
    hub = { limit: 100, remaining: 2, windowSeconds: 60 };
    assert.equal(guard('hub'), true);
    now = 69_999;
    assert.equal(guard('hub'), true, 'same value: still the observation at 10 s');
    now = 70_000;
    assert.equal(guard('hub'), false, 'window over');
    assert.equal(guard('other'), false, 'an observedAt the client gives is used as is');
    hub = undefined;
    assert.equal(guard('hub'), false);
    assert.equal(guard('off'), false);
    assert.equal(guard('unknown'), false);
  });
});

/** Forwards to `target`, adding rate-limit headers (remaining: `state.remaining`) to manifest responses. */
async function startRateLimitHeaders(target: string, state: { remaining: number }): Promise<{ url: string; stop(): Promise<void> }> {
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    const upstream = request(
      { hostname: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (upRes) => {
        const headers = { ...upRes.headers };
        if (req.url?.includes('/manifests/')) {
          headers['ratelimit-limit'] = '100;w=21600';
          headers['ratelimit-remaining'] = `${state.remaining};w=21600`;
        }
        res.writeHead(upRes.statusCode ?? 502, headers);
        upRes.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('quota guard over a real upstream', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  const quota = { remaining: 50 };
  let manifests: ProxyManifests;
  let route: UpstreamRoute;
  let now = Date.now();
  let digest: string;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    const headers = await startRateLimitHeaders(proxy.url, quota);
    td.add(() => headers.stop());
    const image = await buildImage({ layerSizes: [16 * 1024] });
    td.add(() => removeDir(image.layoutDir));
    digest = (await pushImage(image, upstream, 'library/limited:1')).manifestDigest;

    const root = await tempDir('quota');
    td.add(() => removeDir(root));
    const logger = createLogger({ level: 'silent' });
    const meta = new MemoryMeta({ maxEntries: 1000 });
    const config = configSchema.parse({ upstreams: { hub: { url: headers.url, dockerHub: true, retries: 0 } } });
    const client = createUpstream('hub', config.upstreams.hub!, { meta, logger, maxManifestSize: 4 << 20 });
    td.add(() => client.close());
    const upstreams = new Map([['hub', client]]);
    const clock = (): number => now;
    manifests = new ProxyManifests({
      store: new ContentStore(checkedDriver(new FilesystemDriver({ root }))),
      meta,
      upstreams,
      tagTtl: () => 60_000,
      logger,
      now: clock,
      quotaGuard: createQuotaGuard({ upstreams, threshold: () => 5, now: clock }),
    });
    route = resolveRoute('hub/limited', undefined, { upstreams: config.upstreams, localNamespaces: [], defaultUpstream: '' }) as UpstreamRoute;
  });
  after(() => td.run());

  const getTag = async () => {
    const m = await manifests.get(route, { kind: 'tag', tag: '1' });
    assert.equal(m.digest, digest);
    assert.equal((await m.body()).length, m.size);
    return m.source;
  };

  test('with quota to spare, a stale tag is revalidated', async () => {
    assert.equal(await getTag(), 'upstream');
    now += 61_000;
    proxy.reset();
    assert.equal(await getTag(), 'revalidated');
    assert.equal(proxy.count({ method: 'HEAD', path: /\/manifests\/1$/ }), 1);
  });

  test('once the quota runs low, stale tags are served from cache without asking the upstream', async () => {
    quota.remaining = 2;
    now += 61_000;
    assert.equal(await getTag(), 'revalidated', 'this revalidation is where the low quota is seen');
    for (let i = 0; i < 3; i++) {
      now += 61_000;
      proxy.reset();
      assert.equal(await getTag(), 'stale');
      assert.equal(proxy.count(), 0, `upstream saw: ${JSON.stringify(proxy.requests)}`);
    }
  });

  test('after the window resets, tags are revalidated again', async () => {
    quota.remaining = 90;
    now += 6 * hour;
    proxy.reset();
    assert.equal(await getTag(), 'revalidated');
    assert.equal(proxy.count({ method: 'HEAD', path: /\/manifests\/1$/ }), 1);
  });
});
