/**
 * Eviction over a real cache: images pulled through tender from a real
 * Distribution (behind a counting proxy), an image pushed into a local
 * namespace beside them, and eviction runs with a budget smaller than the
 * working set. The cache ends within budget in LRU order, shared blobs go
 * only with their last image, local content stays, evicted images are
 * fetched again on demand, and pulls running during eviction all succeed.
 * Also: the tracked services record accesses and pin blobs while served.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AccessTimes } from '../src/cache/access-times.ts';
import { planEviction } from '../src/cache/eviction-plan.ts';
import { evict } from '../src/cache/evictor.ts';
import { scanCache, type CacheInventory, type CacheUnit } from '../src/cache/inventory.ts';
import { Pins } from '../src/cache/pins.ts';
import { TrackedProxyBlobs, TrackedProxyManifests } from '../src/cache/tracked.ts';
import { createLogger } from '../src/log.ts';
import { MemoryMeta } from '../src/meta/memory.ts';
import { resolveRoute, type UpstreamRoute } from '../src/routing.ts';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { ContentStore } from '../src/store/content-store.ts';
import { cacheRepo } from '../src/store/layout.ts';
import { createUpstream } from '../src/upstream/client.ts';
import { configSchema } from '../src/config/schema.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, sha256, type BuiltImage } from './helpers/images.ts';
import { blobOf, MEDIA_OCI_MANIFEST, memoryImage, pushMemoryImage, randomBlob, type MemoryImage } from './helpers/push.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, skipUnlessTools, teardown, tempDir } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const blobGets = (digest: string) => ({ method: 'GET', path: new RegExp(`/blobs/${digest}$`) });

/** Cached bytes as eviction counts them: distinct digests cached units refer to, local content's excluded. */
function cachedBytes(inv: CacheInventory): number {
  const units = inv.units.map((u) => ({ id: u.id, lastAccess: u.lastAccess, refs: [...u.manifests, ...u.blobs] }));
  return planEviction({ units, sizes: inv.sizes, local: inv.local, now: Date.now() }).bytesBefore;
}

describe('cache eviction', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let store: ContentStore;
  let access: AccessTimes;
  /** Upstream repository name → image and the digest the upstream serves. */
  const images = new Map<string, { image: BuiltImage; digest: string }>();
  let local: MemoryImage;
  let localDigest: string;

  const repoOf = (name: string): string => cacheRepo('hub', `library/${name}`);
  const unitOf = (inv: CacheInventory, name: string): CacheUnit => {
    const u = inv.units.find((x) => x.repo === repoOf(name) && x.kind === 'image');
    assert.ok(u, `${name} is cached`);
    return u;
  };
  const blobsOf = (name: string): string[] => {
    const { image } = images.get(name)!;
    return [image.configDigest, ...image.layers.map((l) => l.digest)];
  };
  const present = async (digest: string): Promise<boolean> => (await store.statBlob(digest)) !== undefined;
  /** The local image as tender serves it: manifest bytes and every blob, checked by digest (and pulled by skopeo). */
  async function assertLocalIntact(): Promise<void> {
    const manifest = await fetch(`${tender.url}/v2/acme/app/manifests/1`, { headers: { accept: MEDIA_OCI_MANIFEST } });
    assert.equal(manifest.status, 200);
    assert.equal(sha256(Buffer.from(await manifest.arrayBuffer())), localDigest);
    for (const blob of local.blobs) {
      const res = await fetch(`${tender.url}/v2/acme/app/blobs/${blob.digest}`);
      assert.equal(res.status, 200, `local blob ${blob.digest}`);
      assert.equal(sha256(Buffer.from(await res.arrayBuffer())), blob.digest);
    }
    // skopeo recompresses the test's fake gzip layers into its layout, so only its success is checked.
    await pull('acme/app:1');
  }
  async function pull(ref: string): Promise<{ manifestDigest: string; blobs: string[] }> {
    const r = await skopeoPull(`${tender.host}/${ref}`);
    await removeDir(r.dir);
    return r;
  }

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    tender = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true, tagTtl: '1h' } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      access: [
        { repositories: 'acme/**', pull: ['$all'], push: ['$all'] },
        { repositories: '**', pull: ['$all'] },
      ],
    });
    td.add(() => tender.stop());
    store = new ContentStore(checkedDriver(new FilesystemDriver({ root: tender.root })));
    access = new AccessTimes({ store });

    for (const name of ['app1', 'app2', 'app3']) {
      const image = await buildImage({ layerSizes: [200 * 1024] });
      td.add(() => removeDir(image.layoutDir));
      images.set(name, { image, digest: (await pushImage(image, upstream, `library/${name}:1`)).manifestDigest });
    }
    const shared = await buildImage({ layerSizes: [100 * 1024] });
    td.add(() => removeDir(shared.layoutDir));
    for (const name of ['shared-a', 'shared-b']) {
      images.set(name, { image: shared, digest: (await pushImage(shared, upstream, `library/${name}:1`)).manifestDigest });
    }
    for (const name of images.keys()) assert.equal((await pull(`hub/library/${name}:1`)).manifestDigest, images.get(name)!.digest);
    // Pulled only while eviction runs: large enough that eviction happens in the middle of its transfer.
    const big = await buildImage({ layerSizes: [8 * 1024 * 1024, 1024 * 1024] });
    td.add(() => removeDir(big.layoutDir));
    images.set('big', { image: big, digest: (await pushImage(big, upstream, 'library/big:1')).manifestDigest });

    // A local image sharing app2's layer: that layer must survive app2's eviction.
    const app2 = images.get('app2')!.image;
    const app2Layer = blobOf(await readFile(join(app2.layoutDir, 'blobs', 'sha256', app2.layers[0]!.digest.slice('sha256:'.length))));
    local = memoryImage({ layers: [app2Layer, randomBlob(50_000)] });
    localDigest = await pushMemoryImage({ url: tender.url }, 'acme/app', '1', local);

    // Least recently used first: shared-a, app2, shared-b, app3, app1 (cached before app2 and app3, used since).
    const base = Date.now() - 3_600_000;
    ['shared-a', 'app2', 'shared-b', 'app3', 'app1'].forEach((name, i) => access.touchManifest(repoOf(name), images.get(name)!.digest, base + i * 1000));
  });
  after(() => td.run());

  test('the first run evicts least recently used images until within budget, freeing no blob another image uses', async () => {
    const inv = await scanCache(store, access);
    assert.equal(inv.units.filter((u) => u.kind === 'image').length, 5);
    assert.ok(inv.local.has(local.layers[0]!.digest));
    const app2 = unitOf(inv, 'app2');
    // app2's own bytes: manifest and config (its layer is local content's too).
    const app2Own = [...app2.manifests, ...app2.blobs].filter((d) => !inv.local.has(d)).reduce((n, d) => n + (inv.sizes.get(d) ?? 0), 0);
    const before = cachedBytes(inv);
    const budget = before - app2Own;

    const result = await evict(store, access, { budgetBytes: budget, pinned: () => false, meta: tender.running.meta });
    assert.deepEqual(
      result.evicted.map((e) => e.repo),
      [repoOf('shared-a'), repoOf('app2')],
    );
    assert.equal(result.bytesBefore, before);
    assert.ok(result.bytesAfter <= budget);
    assert.deepEqual(result.deleted.map((d) => d.digest).sort(), [images.get('app2')!.digest, images.get('app2')!.image.configDigest].sort());
    for (const d of blobsOf('shared-b')) assert.ok(await present(d), `shared blob ${d} kept for shared-b`);
    assert.ok(await present(local.layers[0]!.digest), 'the layer app2 shares with a local image is kept');
    assert.deepEqual(await store.listTags(repoOf('shared-a')), []);
    assert.deepEqual(await store.listManifests(repoOf('shared-a')), []);
    assert.ok(cachedBytes(await scanCache(store, access)) <= budget);
  });

  test('a pinned blob outlives the run that evicts its image, and goes in the next', async () => {
    const inv = await scanCache(store, access);
    const budget = [...unitOf(inv, 'app1').manifests, ...unitOf(inv, 'app1').blobs].reduce((n, d) => n + (inv.sizes.get(d) ?? 0), 0) + 1024;
    const app3Layer = images.get('app3')!.image.layers[0]!.digest;
    const result = await evict(store, access, { budgetBytes: budget, pinned: (d) => d === app3Layer, meta: tender.running.meta });
    assert.deepEqual(
      result.evicted.map((e) => e.repo),
      [repoOf('shared-b'), repoOf('app3')],
    );
    assert.deepEqual(result.kept, [app3Layer]);
    assert.ok(await present(app3Layer));
    for (const d of blobsOf('shared-b')) assert.ok(!(await present(d)), `shared blob ${d} freed with its last image`);

    const next = await evict(store, access, { budgetBytes: budget, pinned: () => false, meta: tender.running.meta });
    assert.deepEqual(
      next.evicted.map((e) => [e.kind, e.digest]),
      [['blob', app3Layer]],
    );
    assert.ok(!(await present(app3Layer)));
    const after = await scanCache(store, access);
    assert.ok(cachedBytes(after) <= budget, `${cachedBytes(after)} <= ${budget}`);
    assert.deepEqual(
      after.units.filter((u) => u.kind === 'image').map((u) => u.repo),
      [repoOf('app1')],
    );
  });

  test('local content is intact, the kept image is served from cache, evicted ones are fetched again', async () => {
    await assertLocalIntact();

    proxy.reset();
    assert.equal((await pull('hub/library/app1:1')).manifestDigest, images.get('app1')!.digest);
    assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 0, 'app1 stayed cached');

    for (const name of ['app3', 'shared-a', 'app2']) {
      proxy.reset();
      assert.equal((await pull(`hub/library/${name}:1`)).manifestDigest, images.get(name)!.digest);
      assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/manifests/1$`) }), 1, `${name}'s tag asked again`);
      for (const d of blobsOf(name)) {
        // app2's layer never left (the local image has it): only a HEAD to confirm the repository may read it.
        const expected = name === 'app2' && d === local.layers[0]!.digest ? 0 : 1;
        assert.equal(proxy.count(blobGets(d)), expected, `${name}: upstream GETs of ${d}`);
      }
    }
  });

  test('pulls running while eviction empties the cache over and over all succeed with the right digests', async () => {
    const names = [...images.keys()];
    for (let round = 0; round < 3; round++) {
      let done = false;
      const pulls = Promise.all(names.map((n) => pull(`hub/library/${n}:1`))).finally(() => (done = true));
      let runs = 0;
      let freed = 0;
      while (!done) {
        const r = await evict(store, undefined, { budgetBytes: 0, pinned: () => false, meta: tender.running.meta });
        freed += r.freedBytes;
        runs++;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      const results = await pulls;
      results.forEach((r, i) => assert.equal(r.manifestDigest, images.get(names[i]!)!.digest, `${names[i]} in round ${round}`));
      assert.ok(runs > 0 && freed > 0, `round ${round}: eviction ran (${runs} runs, ${freed} bytes)`);
    }
    await assertLocalIntact();
  });
});

describe('tracked pull-through services', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let image: BuiltImage;
  let digest: string;

  before(async () => {
    upstream = await startDistribution({ auth: 'none' });
    td.add(() => upstream.stop());
    image = await buildImage({ layerSizes: [64 * 1024] });
    td.add(() => removeDir(image.layoutDir));
    digest = (await pushImage(image, upstream, 'library/tracked:1')).manifestDigest;
  });
  after(() => td.run());

  test('record manifest and blob accesses, and pin a blob until its body is closed', async () => {
    const root = await tempDir('tracked');
    td.add(() => removeDir(root));
    const logger = createLogger({ level: 'silent' });
    const store = new ContentStore(checkedDriver(new FilesystemDriver({ root })));
    const meta = new MemoryMeta({ maxEntries: 1000 });
    const config = configSchema.parse({ upstreams: { hub: { url: upstream.url, dockerHub: true } } });
    const up = createUpstream('hub', config.upstreams.hub!, { meta, logger, maxManifestSize: 4 << 20 });
    td.add(() => up.close());
    const upstreams = new Map([['hub', up]]);
    const accessTimes = new AccessTimes({ store });
    const pins = new Pins();
    const manifests = new TrackedProxyManifests({ store, meta, upstreams, tagTtl: () => 60_000, logger, accessTimes });
    const blobs = new TrackedProxyBlobs({ store, upstreams, spoolDir: join(root, '_spool'), logger, accessTimes, pins });
    await blobs.init();
    const route = resolveRoute('hub/tracked', undefined, { upstreams: config.upstreams, localNamespaces: [], defaultUpstream: '' }) as UpstreamRoute;

    const m = await manifests.get(route, { kind: 'tag', tag: '1' });
    assert.equal(m.digest, digest);
    assert.ok(accessTimes.manifestAccess(route.repo, digest) !== undefined);
    assert.ok((await manifests.peek(route, { kind: 'tag', tag: '1' }))?.digest === digest);

    const layer = image.layers[0]!.digest;
    const body = await blobs.open(route, layer);
    assert.ok(pins.isPinned(layer), 'pinned while being served');
    assert.ok(accessTimes.blobAccess(route.repo, layer) !== undefined);
    assert.equal(body.bytes.kind, 'handle');
    if (body.bytes.kind === 'handle') await body.bytes.handle.close();
    await blobs.drain();
    assert.ok(!pins.isPinned(layer), 'released once closed');
    await assert.rejects(blobs.open(route, `sha256:${'0'.repeat(64)}`));
    assert.equal(pins.size, 0, 'a failed open holds no pin');
  });
});
