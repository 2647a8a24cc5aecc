/**
 * Garbage collection over a real data root: images pushed over HTTP into a
 * local repository, one deleted, cached upstream content beside them. Only
 * blobs nothing references any more go; shared, still-referenced, cached
 * and freshly uploaded blobs stay; a dry run deletes nothing; the
 * `tender gc` command reports the same.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { ContentStore } from '../src/store/content-store.ts';
import { collectGarbage, GcError } from '../src/store/gc.ts';
import { localRepo } from '../src/store/layout.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, sha256, type BuiltImage } from './helpers/images.ts';
import {
  blobOf,
  call,
  MEDIA_OCI_INDEX,
  MEDIA_OCI_MANIFEST,
  memoryImage,
  pushBlob,
  pushMemoryImage,
  putManifest,
  randomBlob,
  type Blob,
  type MemoryImage,
  type Registry,
} from './helpers/push.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, run, skipUnlessTools, tempDir, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

describe('garbage collection', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let registry: Registry;
  let store: ContentStore;
  let cached: BuiltImage;
  let imageA: MemoryImage;
  let imageB: MemoryImage;
  /** Referenced only as a child of an index (its own link deleted). */
  let child: MemoryImage;
  let index: Blob;
  /** What only the deleted image A used. */
  let garbage: Blob[];

  const digests = (blobs: Blob[]): string[] => blobs.map((b) => b.digest).sort();
  const present = async (digest: string): Promise<boolean> => (await store.statBlob(digest)) !== undefined;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    cached = await buildImage({ layerSizes: [32 * 1024] });
    td.add(() => removeDir(cached.layoutDir));
    await pushImage(cached, upstream, 'library/base:1');
    tender = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      access: [
        { repositories: 'acme/**', pull: ['$all'], push: ['$all'], delete: ['$all'] },
        { repositories: '**', pull: ['$all'] },
      ],
      deleteEnabled: true,
    });
    td.add(() => tender.stop());
    registry = { url: tender.url };
    store = new ContentStore(checkedDriver(new FilesystemDriver({ root: tender.root })));

    const shared = randomBlob(50_000);
    const onlyA = randomBlob(30_000);
    imageA = memoryImage({ layers: [shared, onlyA] });
    imageB = memoryImage({ layers: [shared, randomBlob(40_000)] });
    await pushMemoryImage(registry, 'acme/gc', 'a', imageA);
    await pushMemoryImage(registry, 'acme/gc', 'b', imageB);

    child = memoryImage({ sizes: [20_000] });
    await pushMemoryImage(registry, 'acme/gc-index', child.manifest.digest, child);
    index = blobOf(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_OCI_INDEX,
        manifests: [{ mediaType: MEDIA_OCI_MANIFEST, digest: child.manifest.digest, size: child.manifest.data.length, platform: { os: 'linux', architecture: 'amd64' } }],
      }),
    );
    const put = await putManifest(registry, 'acme/gc-index', 'multi', index.data, MEDIA_OCI_INDEX);
    assert.equal(put.status, 201);
    assert.equal((await call(registry, 'DELETE', `/v2/acme/gc-index/manifests/${child.manifest.digest}`)).status, 202);

    // Cache the upstream image: manifest, config and layers.
    const m = await call(registry, 'GET', '/v2/hub/library/base/manifests/1', { headers: { Accept: MEDIA_OCI_MANIFEST } });
    assert.equal(m.status, 200);
    await m.arrayBuffer();
    for (const digest of [cached.configDigest, ...cached.layers.map((l) => l.digest)]) {
      const res = await call(registry, 'GET', `/v2/hub/library/base/blobs/${digest}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }

    assert.equal((await call(registry, 'DELETE', `/v2/acme/gc/manifests/${imageA.manifest.digest}`)).status, 202);
    garbage = [imageA.manifest, imageA.config, onlyA];
  });
  after(() => td.run());

  test('a dry run reports exactly the blobs only the deleted image used, and deletes nothing', async () => {
    const result = await collectGarbage(store, { graceMs: 0, dryRun: true });
    assert.deepEqual(result.deleted.map((d) => d.digest).sort(), digests(garbage));
    assert.equal(result.freedBytes, garbage.reduce((n, b) => n + b.data.length, 0));
    for (const d of result.deleted) assert.equal(d.size, garbage.find((b) => b.digest === d.digest)!.data.length);
    for (const blob of garbage) assert.ok(await present(blob.digest), `${blob.digest} still there`);
    assert.ok(result.marked > 0);
  });

  test('tender gc --dry-run reports what it would free, and the default grace keeps recent blobs', async () => {
    const dir = await tempDir('gc-cli');
    td.add(() => removeDir(dir));
    const file = join(dir, 'tender.yaml');
    await writeFile(file, `storage: { filesystem: { root: ${JSON.stringify(tender.root)} } }\nlog: { level: warn }\n`);
    const bytes = garbage.reduce((n, b) => n + b.data.length, 0);

    const { stdout } = await run(process.execPath, [cli, 'gc', '--config', file, '--dry-run', '--grace', '0s']);
    for (const blob of garbage) assert.ok(stdout.includes(`would delete ${blob.digest} (${blob.data.length} bytes)`), stdout);
    assert.match(stdout, new RegExp(`^dry run: would delete 3 blobs, freeing ${bytes} bytes \\(`, 'm'));
    for (const blob of garbage) assert.ok(await present(blob.digest));

    const defaults = await run(process.execPath, [cli, 'gc', '--config', file, '--dry-run']);
    assert.match(defaults.stdout, /^dry run: would delete 0 blobs, freeing 0 bytes/m, 'everything is younger than gc.grace (1h)');

    const bad = await run(process.execPath, [cli, 'gc', '--config', file, '--grace', 'soon'], { allowFail: true });
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--grace/);
  });

  test('a local manifest gc cannot read aborts the run before anything is deleted', async () => {
    const body = Buffer.from('this is not a manifest');
    const repo = localRepo('acme/corrupt');
    const digest = sha256(body);
    await store.putManifest(repo, { digest, mediaType: MEDIA_OCI_MANIFEST, body });
    try {
      await assert.rejects(collectGarbage(store, { graceMs: 0, dryRun: false }), GcError);
      for (const blob of garbage) assert.ok(await present(blob.digest), `${blob.digest} kept`);
    } finally {
      await store.unlinkManifest(repo, digest);
      await store.deleteBlob(digest);
    }
  });

  test('gc deletes only unreferenced blobs: shared, still-referenced, index children and cached content stay', async () => {
    const kept = [
      ...imageB.blobs,
      imageB.manifest,
      ...child.blobs,
      child.manifest,
      index,
    ];
    const result = await collectGarbage(store, { graceMs: 0, dryRun: false });
    assert.deepEqual(result.deleted.map((d) => d.digest).sort(), digests(garbage));
    for (const blob of garbage) assert.equal(await present(blob.digest), false, `${blob.digest} deleted`);
    for (const blob of kept) assert.ok(await present(blob.digest), `${blob.digest} kept`);
    for (const digest of [cached.manifestDigest, cached.configDigest, ...cached.layers.map((l) => l.digest)]) {
      assert.ok(await present(digest), `cached ${digest} kept`);
    }

    // Still served: image B whole, the deleted image's own blobs gone.
    const b = await call(registry, 'GET', '/v2/acme/gc/manifests/b', { headers: { Accept: MEDIA_OCI_MANIFEST } });
    assert.equal(b.status, 200);
    assert.ok(Buffer.from(await b.arrayBuffer()).equals(imageB.manifest.data));
    for (const blob of imageB.blobs) {
      const res = await call(registry, 'GET', `/v2/acme/gc/blobs/${blob.digest}`);
      assert.equal(res.status, 200);
      assert.ok(Buffer.from(await res.arrayBuffer()).equals(blob.data));
    }
    assert.equal((await call(registry, 'HEAD', `/v2/acme/gc/blobs/${imageA.layers[1]!.digest}`)).status, 404);
    const idx = await call(registry, 'GET', '/v2/acme/gc-index/manifests/multi', { headers: { Accept: MEDIA_OCI_INDEX } });
    assert.equal(idx.status, 200);
    await idx.arrayBuffer();

    // Cached content is served without asking the upstream.
    const before = proxy.requests.length;
    const m = await call(registry, 'GET', `/v2/hub/library/base/manifests/${cached.manifestDigest}`, { headers: { Accept: MEDIA_OCI_MANIFEST } });
    assert.equal(m.status, 200);
    await m.arrayBuffer();
    for (const digest of [cached.configDigest, ...cached.layers.map((l) => l.digest)]) {
      const res = await call(registry, 'GET', `/v2/hub/library/base/blobs/${digest}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    assert.deepEqual(proxy.requests.slice(before), []);

    // A pushed-again image is whole again.
    await pushMemoryImage(registry, 'acme/gc', 'a', imageA);
    const again = await collectGarbage(store, { graceMs: 0, dryRun: false });
    assert.deepEqual(again.deleted, [], 'nothing left to collect');
  });

  test('a blob uploaded moments ago and not referenced yet (a push in progress) survives the default grace', async () => {
    const wip = randomBlob(10_000);
    await pushBlob(registry, 'acme/wip', wip);
    const graceMs = tender.config.gc.grace;
    assert.equal(graceMs, 3_600_000);
    const result = await collectGarbage(store, { graceMs, dryRun: false });
    assert.ok(!result.deleted.some((d) => d.digest === wip.digest));
    assert.ok(await present(wip.digest));
    const later = await collectGarbage(store, { graceMs, dryRun: true, now: Date.now() + 2 * graceMs });
    assert.deepEqual(later.deleted.map((d) => d.digest), [wip.digest], 'once older than the grace, it would go');
    assert.ok(await present(wip.digest));
  });
});
