/**
 * Pull-through caching end to end: a real Distribution with Bearer token auth
 * as the upstream, a counting and fault-injecting proxy between it and tender,
 * and skopeo as the client.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, pushImage, type BuiltImage } from './helpers/images.ts';
import { skopeoInspectRaw, skopeoPull } from './helpers/clients.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, skipUnlessTools, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const blobGets = (digest: string) => ({ method: 'GET', path: new RegExp(`/blobs/${digest}$`) });
const manifestReq = (method: string, ref?: string) => ({ method, path: new RegExp(`/manifests/${ref ?? '[^/]+'}$`) });

function blobPath(root: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(root, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

describe('pull-through cache', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let alpine: BuiltImage;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    const up = { url: proxy.url, retries: 1, timeouts: { connect: '2s', response: '5s' } };
    tender = await startTender({
      upstreams: {
        hub: { ...up, dockerHub: true, aliases: ['docker.io'], tagTtl: '1h' },
        fast: { ...up, tagTtl: '1s' },
      },
      defaultUpstream: 'hub',
    });
    td.add(() => tender.stop());
    alpine = await buildImage({ layerSizes: [1024 * 1024, 200 * 1024] });
    await pushImage(alpine, upstream, 'library/alpine:3.20');
  });
  after(() => td.run());

  async function pull(ref: string, opts: { all?: boolean } = {}) {
    const r = await skopeoPull(`${tender.host}/${ref}`, opts);
    td.add(() => removeDir(r.dir));
    return r;
  }

  test('a cold pull through a path prefix fetches each blob once and matches the upstream', async () => {
    proxy.reset();
    const r = await pull('hub/alpine:3.20');
    assert.equal(r.manifestDigest, alpine.manifestDigest);
    for (const d of [alpine.configDigest, ...alpine.layers.map((l) => l.digest)]) {
      assert.ok(r.blobs.includes(d), `copied layout has ${d}`);
      assert.equal(proxy.count(blobGets(d)), 1, `one upstream GET for ${d}`);
      assert.ok(existsSync(blobPath(tender.root, d)), 'blob committed to the cache');
    }
    assert.ok((upstream.issuer?.tokensIssued() ?? 0) > 0, 'tender negotiated a Bearer token');
  });

  test('a warm re-pull through the default route makes no upstream request at all', async () => {
    proxy.reset();
    const r = await pull('alpine:3.20');
    assert.equal(r.manifestDigest, alpine.manifestDigest);
    assert.equal(proxy.count(), 0, `upstream saw: ${JSON.stringify(proxy.requests)}`);
  });

  test('a multi-arch OCI index is pulled whole with --all', async () => {
    const index = await buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [64 * 1024] });
    const { manifestDigest } = await pushImage(index, upstream, 'acme/multi:1');
    const r = await pull('hub/acme/multi:1', { all: true });
    assert.equal(r.manifestDigest, manifestDigest);
    for (const child of index.children ?? []) {
      assert.ok(r.blobs.includes(child.manifestDigest));
      for (const l of child.layers) assert.ok(r.blobs.includes(l.digest));
    }
  });

  test('Docker schema 2 manifests are served byte for byte with their media type', async () => {
    const image = await buildImage({ layerSizes: [32 * 1024] });
    const { manifestDigest } = await pushImage(image, upstream, 'acme/docker:1', { format: 'v2s2' });
    const creds = `${upstream.pushCredentials.username}:${upstream.pushCredentials.password}`;
    const direct = await skopeoInspectRaw(`${upstream.host}/acme/docker:1`, { creds });
    const through = await skopeoInspectRaw(`${tender.host}/hub/acme/docker:1`);
    assert.ok(through.equals(direct));
    const res = await fetch(`${tender.url}/v2/hub/acme/docker/manifests/1`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(res.headers.get('docker-content-digest'), manifestDigest);
    assert.equal(res.headers.get('content-length'), String(direct.length));
  });

  test('8 concurrent cold pulls of an image with a 100 MB layer cause one upstream GET per blob', async () => {
    const big = await buildImage({ layerSizes: [100 * 1024 * 1024, 512 * 1024], compress: true });
    await pushImage(big, upstream, 'acme/big:1');
    td.add(() => removeDir(big.layoutDir));
    proxy.reset();
    const tokensBefore = upstream.issuer?.tokensIssued() ?? 0;
    const results = await Promise.all(Array.from({ length: 8 }, () => pull('hub/acme/big:1')));
    for (const r of results) {
      assert.equal(r.manifestDigest, big.manifestDigest);
      for (const l of big.layers) assert.ok(r.blobs.includes(l.digest));
      await removeDir(r.dir);
    }
    for (const d of [big.configDigest, ...big.layers.map((l) => l.digest)]) {
      assert.equal(proxy.count(blobGets(d)), 1, `exactly one upstream GET for ${d}`);
    }
    assert.equal(proxy.count(manifestReq("GET")), 1, `one manifest GET: ${JSON.stringify(proxy.requests.filter((q) => q.path.includes("manifests")))}`);
    assert.equal((upstream.issuer?.tokensIssued() ?? 0) - tokensBefore, 1, 'one token for the repository');
  });

  for (const kind of ['corrupt', 'truncate'] as const) {
    test(`${kind} upstream bytes fail the pull and poison nothing; the next pull succeeds`, async () => {
      const image = await buildImage({ layerSizes: [2 * 1024 * 1024] });
      await pushImage(image, upstream, `acme/${kind}:1`);
      const layer = image.layers[0]!.digest;
      proxy.reset();
      proxy.fault = (req) => (req.method === 'GET' && req.path.endsWith(`/blobs/${layer}`) ? { kind } : undefined);
      try {
        await assert.rejects(pull(`hub/acme/${kind}:1`));
        const res = await fetch(`${tender.url}/v2/hub/acme/${kind}/blobs/${layer}`);
        await assert.rejects(res.arrayBuffer(), 'the body is aborted, never completed');
      } finally {
        proxy.fault = undefined;
      }
      await tender.running.blobs.drain();
      // The proxy records an aborted upstream request when its socket closes, a moment later.
      await sleep(300);
      assert.ok(!existsSync(blobPath(tender.root, layer)), 'nothing unverified is committed');
      const failedGets = proxy.count(blobGets(layer));
      assert.ok(failedGets >= 1);
      const r = await pull(`hub/acme/${kind}:1`);
      assert.ok(r.blobs.includes(layer));
      assert.equal(proxy.count(blobGets(layer)), failedGets + 1, 'fetched again, once');
      assert.ok(existsSync(blobPath(tender.root, layer)));
    });
  }

  test('a stale tag is revalidated with one HEAD and re-fetched only when its digest moved', async () => {
    const v1 = await buildImage({ layerSizes: [16 * 1024] });
    const { manifestDigest: d1 } = await pushImage(v1, upstream, 'acme/moving:1');
    await pull('fast/acme/moving:1');
    await sleep(1100);
    proxy.reset();
    const res1 = await fetch(`${tender.url}/v2/fast/acme/moving/manifests/1`);
    assert.equal(res1.headers.get('docker-content-digest'), d1);
    await res1.arrayBuffer();
    assert.equal(proxy.count(manifestReq('HEAD')), 1);
    assert.equal(proxy.count(manifestReq('GET')), 0);

    const v2 = await buildImage({ layerSizes: [16 * 1024] });
    const { manifestDigest: d2 } = await pushImage(v2, upstream, 'acme/moving:1');
    await sleep(1100);
    proxy.reset();
    const res2 = await fetch(`${tender.url}/v2/fast/acme/moving/manifests/1`);
    assert.equal(res2.headers.get('docker-content-digest'), d2);
    await res2.arrayBuffer();
    assert.equal(proxy.count(manifestReq('HEAD')), 1);
    assert.equal(proxy.count(manifestReq('GET')), 1);

    proxy.reset();
    const byDigest = await fetch(`${tender.url}/v2/fast/acme/moving/manifests/${d1}`);
    assert.equal(byDigest.status, 200);
    await byDigest.arrayBuffer();
    assert.equal(proxy.count(), 0, 'a cached digest never goes upstream');
  });

  test('with the upstream offline, cached tags and digests are still served', async () => {
    const image = await buildImage({ layerSizes: [64 * 1024] });
    const { manifestDigest } = await pushImage(image, upstream, 'acme/offline:1');
    await pull('fast/acme/offline:1');
    proxy.fault = () => ({ kind: 'offline' });
    try {
      await sleep(1100);
      const byTag = await pull('fast/acme/offline:1');
      assert.equal(byTag.manifestDigest, manifestDigest);
      const byDigest = await pull(`fast/acme/offline@${manifestDigest}`);
      assert.equal(byDigest.manifestDigest, manifestDigest);
      assert.ok(tender.logs.some((l) => l.msg === 'upstream unavailable; serving stale tag'));
      const missing = await fetch(`${tender.url}/v2/fast/acme/never-pulled/manifests/1`);
      assert.equal(missing.status, 502);
      const body = (await missing.json()) as { errors: Array<{ code: string }> };
      assert.equal(body.errors[0]?.code, 'UPSTREAM_UNAVAILABLE');
    } finally {
      proxy.fault = undefined;
    }
  });

  test('with the upstream answering 429 on manifests, cached tags are still served', async () => {
    const image = await buildImage({ layerSizes: [64 * 1024] });
    const { manifestDigest } = await pushImage(image, upstream, 'acme/limited:1');
    await pull('fast/acme/limited:1');
    proxy.fault = (req) => (req.path.includes('/manifests/') ? { kind: 'status', status: 429 } : undefined);
    try {
      await sleep(1100);
      proxy.reset();
      const r = await pull('fast/acme/limited:1');
      assert.equal(r.manifestDigest, manifestDigest);
      assert.ok(proxy.requests.some((q) => q.status === 429), 'the upstream was asked and refused');
      const uncached = await fetch(`${tender.url}/v2/fast/acme/limited/manifests/other`);
      assert.equal(uncached.status, 429);
      const body = (await uncached.json()) as { errors: Array<{ code: string }> };
      assert.equal(body.errors[0]?.code, 'TOOMANYREQUESTS');
    } finally {
      proxy.fault = undefined;
    }
  });
});
