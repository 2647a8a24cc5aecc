/**
 * Warming: images pulled through a running tender's own API ahead of use.
 * A multi-platform index warmed whole is then pulled (`skopeo --all`) with
 * the upstream offline; a platform filter fetches only that platform; the
 * `tender warm` command prints plain progress lines when not on a terminal;
 * the schedule warms its list.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { parseImageReference, platformWanted, warm, type WarmEvent } from '../src/cache/warm.ts';
import { startWarmSchedule } from '../src/cache/warm-schedule.ts';
import { createLogger } from '../src/log.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, pushImage, type BuiltImage } from './helpers/images.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, run, skipUnlessTools, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const blobGets = (digest: string) => ({ method: 'GET', path: new RegExp(`/blobs/${digest}$`) });

describe('warm helpers', () => {
  test('image references', () => {
    assert.deepEqual(parseImageReference('hub/library/alpine:3.20'), { name: 'hub/library/alpine', reference: '3.20' });
    assert.deepEqual(parseImageReference('alpine'), { name: 'alpine', reference: 'latest' });
    assert.deepEqual(parseImageReference('127.0.0.1:5000/x'), { name: '127.0.0.1:5000/x', reference: 'latest' });
    const d = `sha256:${'a'.repeat(64)}`;
    assert.deepEqual(parseImageReference(`ghcr/o/i:1@${d}`), { name: 'ghcr/o/i', reference: d });
    assert.throws(() => parseImageReference('x@sha256:zz'));
  });

  test('platforms', () => {
    const arm = { mediaType: 'm', digest: 'd', size: 1, platform: { os: 'linux', architecture: 'arm', variant: 'v7' } };
    assert.ok(platformWanted(arm, undefined));
    assert.ok(platformWanted(arm, ['linux/arm']));
    assert.ok(platformWanted(arm, ['linux/amd64', 'linux/arm/v7']));
    assert.ok(!platformWanted(arm, ['linux/arm/v6']));
    assert.ok(!platformWanted({ ...arm, platform: undefined }, ['linux/arm']));
  });
});

describe('warming the cache', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let multi: BuiltImage;
  let multiDigest: string;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    tender = await startTender({ upstreams: { hub: { url: proxy.url, dockerHub: true, retries: 0, tagTtl: '1h' } }, defaultUpstream: 'hub' });
    td.add(() => tender.stop());
    multi = await buildIndex({ platforms: ['amd64', 'arm64', 'linux/arm/v7'], layerSizes: [300 * 1024, 20 * 1024] });
    td.add(() => removeDir(multi.layoutDir));
    multiDigest = (await pushImage(multi, upstream, 'acme/multi:1')).manifestDigest;
  });
  after(() => {
    proxy.fault = undefined;
    return td.run();
  });

  test('a warmed multi-platform image pulls whole with the upstream offline', async () => {
    const events: WarmEvent[] = [];
    const [result] = await warm({ baseUrl: tender.url, images: ['hub/acme/multi:1'], onProgress: (e) => events.push(e) });
    assert.equal(result?.error, undefined);
    assert.equal(result?.digest, multiDigest);
    assert.equal(result?.manifests, 4, 'the index and its three images');
    const blobs = multi.children!.flatMap((c) => [c.configDigest, ...c.layers.map((l) => l.digest)]);
    assert.equal(result?.blobs, blobs.length);
    assert.equal(events.filter((e) => e.kind === 'blob').length, blobs.length);
    const bytes = events.reduce((n, e) => n + (e.kind === 'bytes' ? e.bytes : 0), 0);
    assert.equal(bytes, result?.bytes);
    assert.deepEqual(
      events.filter((e) => e.kind !== 'bytes' && e.kind !== 'blob').map((e) => e.kind),
      ['image', 'done'],
    );
    for (const d of blobs) assert.equal(proxy.count(blobGets(d)), 1, `one upstream GET of ${d}`);

    proxy.fault = () => ({ kind: 'offline' });
    try {
      proxy.reset();
      const r = await skopeoPull(`${tender.host}/hub/acme/multi:1`, { all: true });
      td.add(() => removeDir(r.dir));
      assert.equal(r.manifestDigest, multiDigest);
      for (const d of blobs) assert.ok(r.blobs.includes(d), `pulled ${d}`);
      assert.equal(proxy.requests.filter((q) => q.status !== 0).length, 0, 'nothing reached the upstream');
    } finally {
      proxy.fault = undefined;
    }
  });

  test('a platform filter warms only that platform', async () => {
    const index = await buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [40 * 1024] });
    td.add(() => removeDir(index.layoutDir));
    await pushImage(index, upstream, 'acme/filtered:1');
    proxy.reset();
    const [result] = await warm({ baseUrl: tender.url, images: ['hub/acme/filtered:1'], platforms: ['linux/arm64'] });
    assert.equal(result?.error, undefined);
    const [amd64, arm64] = index.children!;
    for (const d of [arm64!.configDigest, ...arm64!.layers.map((l) => l.digest)]) assert.equal(proxy.count(blobGets(d)), 1);
    for (const d of [amd64!.configDigest, ...amd64!.layers.map((l) => l.digest)]) assert.equal(proxy.count(blobGets(d)), 0);

    const [missing] = await warm({ baseUrl: tender.url, images: ['hub/acme/filtered:1'], platforms: ['windows/amd64'] });
    assert.match(missing?.error ?? '', /no manifest for platform/);
    const [unknown] = await warm({ baseUrl: tender.url, images: ['hub/acme/nothing:1'] });
    assert.match(unknown?.error ?? '', /404/);
  });

  test('`tender warm` prints plain progress lines when stdout is not a terminal', async () => {
    const image = await buildImage({ layerSizes: [64 * 1024] });
    td.add(() => removeDir(image.layoutDir));
    const { manifestDigest } = await pushImage(image, upstream, 'acme/cli:1');
    const { stdout, stderr } = await run(process.execPath, [cli, 'warm', '--url', tender.url, 'hub/acme/cli:1']);
    const lines = stdout.trim().split('\n');
    assert.ok(lines[0]?.startsWith(`hub/acme/cli:1: ${manifestDigest}, 1 manifest(s), 2 blob(s)`), stdout);
    assert.ok(lines.some((l) => l.startsWith('hub/acme/cli:1: 2/2 blobs')), stdout);
    assert.match(stdout, /hub\/acme\/cli:1: done in/);
    assert.match(lines.at(-1) ?? '', /^warmed 1 of 1 image\(s\)/);
    assert.ok(!stdout.includes('\u001b['), 'no terminal control sequences');
    assert.equal(stderr, '');

    const failed = await run(process.execPath, [cli, 'warm', '--url', tender.url, 'hub/acme/none:1'], { allowFail: true });
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /hub\/acme\/none:1: failed: .*404/);
  });

  test('the schedule warms its list', async () => {
    const image = await buildImage({ layerSizes: [32 * 1024] });
    td.add(() => removeDir(image.layoutDir));
    await pushImage(image, upstream, 'acme/scheduled:1');
    const schedule = startWarmSchedule({
      baseUrl: tender.url,
      images: ['hub/acme/scheduled:1'],
      platforms: [],
      intervalMs: 3_600_000,
      initialDelayMs: 3_600_000,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      proxy.reset();
      const [result] = await schedule.runNow();
      assert.equal(result?.error, undefined);
      assert.equal(proxy.count(blobGets(image.layers[0]!.digest)), 1);
    } finally {
      await schedule.stop();
    }
  });
});
