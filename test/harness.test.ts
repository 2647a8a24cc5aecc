/**
 * Self-tests for the shared harness: the real upstream, the token issuer, the counting
 * proxy and its faults, the image builder, and every real client.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import {
  ctrImageList,
  ctrPull,
  mirrorRegistriesConf,
  podmanPull,
  skopeoInspectRaw,
  skopeoPull,
  startContainerd,
  writeHostsToml,
} from './helpers/clients.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, MEDIA_OCI_INDEX, pushImage, sha256 } from './helpers/images.ts';
import { removeDir, skipUnlessTools, teardown, tempDir } from './helpers/tools.ts';

const td = teardown();
after(() => td.run());

const BLOB_GET = { method: 'GET', path: /\/blobs\/sha256:/ };

let tokenUpstream: { upstream: DistributionUpstream; proxy: CountingProxy } | undefined;
/** The token-auth Distribution behind a counting proxy, started once for the file. */
async function tokenAuthUpstream(): Promise<{ upstream: DistributionUpstream; proxy: CountingProxy }> {
  if (!tokenUpstream) {
    const upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    const proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    tokenUpstream = { upstream, proxy };
  }
  tokenUpstream.proxy.fault = undefined;
  tokenUpstream.proxy.reset();
  return tokenUpstream;
}

let plainUpstream: DistributionUpstream | undefined;
/** A Distribution without auth, started once for the file. */
async function noAuthUpstream(): Promise<DistributionUpstream> {
  if (!plainUpstream) {
    const upstream = await startDistribution({ auth: 'none' });
    td.add(() => upstream.stop());
    plainUpstream = upstream;
  }
  return plainUpstream;
}

async function built<T extends { layoutDir: string }>(image: Promise<T>): Promise<T> {
  const img = await image;
  td.add(() => removeDir(img.layoutDir));
  return img;
}

void test('push to token-auth Distribution, pull back through the counting proxy', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const image = await built(buildImage({ layerSizes: [100_000, 300_000] }));
  const pushed = await pushImage(image, upstream, 'team/app:1');
  assert.equal(pushed.manifestDigest, image.manifestDigest);
  const tokensAfterPush = upstream.issuer?.tokensIssued() ?? 0;
  assert.ok(tokensAfterPush > 0, 'the push needed tokens');

  const pulled = await skopeoPull(`${proxy.host}/team/app:1`);
  td.add(() => removeDir(pulled.dir));
  assert.equal(pulled.manifestDigest, image.manifestDigest);
  for (const layer of image.layers) {
    assert.ok(pulled.blobs.includes(layer.digest), `layer ${layer.digest} copied`);
    assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`) }), 1, 'one GET per layer');
    assert.equal(proxy.bytesServed({ method: 'GET', path: new RegExp(`/blobs/${layer.digest}$`) }), layer.size);
  }
  assert.ok(pulled.blobs.includes(image.configDigest));
  assert.equal(proxy.count(BLOB_GET), image.layers.length + 1, 'layers and config fetched once each');
  assert.ok(proxy.requests.some((r) => r.path === '/v2/' && r.status === 401), 'the anonymous ping was challenged');
  assert.ok((upstream.issuer?.tokensIssued() ?? 0) > tokensAfterPush, 'the pull got a token');
});

void test('pushes work through the counting proxy (upload Locations are rewritten)', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const image = await built(buildImage({ layerSizes: [50_000] }));
  const pushed = await pushImage(image, { host: proxy.host, pushCredentials: upstream.pushCredentials }, 'team/via-proxy:1');
  assert.equal(pushed.manifestDigest, image.manifestDigest);
  assert.ok(proxy.count({ method: 'PUT', path: /\/blobs\/uploads\// }) >= 2, 'blob uploads went through the proxy');
  assert.equal(proxy.count({ method: 'PUT', path: /\/manifests\/1$/ }), 1);
});

void test('multi-arch index: push with --all, pull with --all and with --override-arch', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const index = await built(buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [20_000] }));
  assert.equal(index.children?.length, 2);
  const pushed = await pushImage(index, upstream, 'team/multi:1');
  assert.equal(pushed.manifestDigest, index.manifestDigest);

  const all = await skopeoPull(`${proxy.host}/team/multi:1`, { all: true });
  td.add(() => removeDir(all.dir));
  assert.equal(all.manifestDigest, index.manifestDigest);
  assert.equal(all.mediaType, MEDIA_OCI_INDEX);
  for (const child of index.children ?? []) {
    assert.ok(all.blobs.includes(child.manifestDigest), `child ${child.platform?.architecture} copied`);
    for (const layer of child.layers) assert.ok(all.blobs.includes(layer.digest));
  }

  const arm = await skopeoPull(`${proxy.host}/team/multi:1`, { overrideArch: 'arm64' });
  td.add(() => removeDir(arm.dir));
  const armChild = index.children?.find((c) => c.platform?.architecture === 'arm64');
  assert.equal(arm.manifestDigest, armChild?.manifestDigest);
});

void test('v2s2 push gives Docker media types and the digest the registry serves', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const image = await built(buildImage({ layerSizes: [10_000] }));
  const pushed = await pushImage(image, upstream, 'team/docker:1', { format: 'v2s2' });
  assert.notEqual(pushed.manifestDigest, image.manifestDigest, 'conversion changes the digest');
  const raw = await skopeoInspectRaw(`${proxy.host}/team/docker:1`);
  assert.equal(sha256(raw), pushed.manifestDigest);
  const manifest = JSON.parse(raw.toString('utf8')) as { mediaType: string; config: { mediaType: string } };
  assert.equal(manifest.mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
  assert.equal(manifest.config.mediaType, 'application/vnd.docker.container.image.v1+json');
  const head = proxy.requests.find((r) => r.path === '/v2/team/docker/manifests/1' && r.status === 200);
  assert.ok(head, 'the manifest was fetched through the proxy');
});

void test('faults: corrupt and truncated blobs, offline and injected statuses make skopeo fail', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 90_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const image = await built(buildImage({ layerSizes: [200_000] }));
  await pushImage(image, upstream, 'team/faulty:1');
  const layer = image.layers[0];
  assert.ok(layer);
  const ref = `${proxy.host}/team/faulty:1`;
  const onLayer = (fault: Parameters<NonNullable<CountingProxy['fault']>>[0]) => fault.method === 'GET' && fault.path.endsWith(layer.digest);

  proxy.fault = (r) => (onLayer(r) ? { kind: 'corrupt' } : undefined);
  await assert.rejects(skopeoPull(ref), /digest|sha256/i);
  const corrupted = proxy.requests.find((r) => r.fault === 'corrupt');
  assert.equal(corrupted?.bytes, layer.size, 'corrupt keeps the length');

  proxy.reset();
  proxy.fault = (r) => (onLayer(r) ? { kind: 'truncate' } : undefined);
  await assert.rejects(skopeoPull(ref));
  const truncated = proxy.requests.find((r) => r.fault === 'truncate');
  assert.equal(truncated?.bytes, Math.floor(layer.size / 2));

  proxy.fault = (r) => (r.path.includes('/manifests/') ? { kind: 'offline' } : undefined);
  await assert.rejects(skopeoPull(ref));
  proxy.fault = (r) => (r.path.includes('/manifests/') ? { kind: 'status', status: 503 } : undefined);
  await assert.rejects(skopeoPull(ref), /503|unavailable/i);

  proxy.fault = (r) => (r.path === '/v2/' ? { kind: 'status', status: 429 } : { kind: 'delay', ms: 200 });
  const limited = await fetch(`${proxy.url}/v2/`);
  assert.equal(limited.status, 429);
  assert.equal(limited.headers.get('retry-after'), '1');
  assert.equal(((await limited.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'TOOMANYREQUESTS');
  const started = Date.now();
  const delayed = await fetch(`${proxy.url}/v2/team/faulty/tags/list`);
  await delayed.body?.cancel();
  assert.ok(Date.now() - started >= 190, 'delay waited');
  assert.equal(delayed.status, 401, 'then passed through');

  proxy.fault = undefined;
  const ok = await skopeoPull(ref);
  td.add(() => removeDir(ok.dir));
  assert.ok(ok.blobs.includes(layer.digest));
});

void test('containerd pulls docker.io/library/NAME:TAG through a hosts.toml mirror', { skip: skipUnlessTools('docker-registry', 'skopeo', 'containerd', 'ctr'), timeout: 90_000 }, async () => {
  const upstream = await noAuthUpstream();
  const mirror = await startCountingProxy(upstream.url);
  td.add(() => mirror.stop());
  const image = await built(buildImage({ layerSizes: [30_000, 60_000] }));
  const pushed = await pushImage(image, upstream, 'library/harness:1');

  const hostsDir = await tempDir('hosts');
  td.add(() => removeDir(hostsDir));
  await writeHostsToml(hostsDir, { server: 'https://registry-1.docker.io', mirror: mirror.url, namespace: 'docker.io' });
  const daemon = await startContainerd();
  td.add(() => daemon.stop());
  await ctrPull(daemon, 'docker.io/library/harness:1', hostsDir);

  const images = await ctrImageList(daemon);
  assert.deepEqual(
    images.find((i) => i.ref === 'docker.io/library/harness:1'),
    { ref: 'docker.io/library/harness:1', mediaType: image.mediaType, digest: pushed.manifestDigest },
  );
  assert.ok(mirror.requests.some((r) => r.url === '/v2/library/harness/manifests/1?ns=docker.io'), 'containerd asked the mirror with ?ns=docker.io');
  assert.equal(mirror.count(BLOB_GET), image.layers.length + 1);
});

void test('podman pulls from Distribution directly and through a registries.conf mirror', { skip: skipUnlessTools('docker-registry', 'skopeo', 'podman'), timeout: 90_000 }, async () => {
  const upstream = await noAuthUpstream();
  const image = await built(buildImage({ layerSizes: [40_000] }));
  await pushImage(image, upstream, 'library/podman:1');

  const direct = await podmanPull(`${upstream.host}/library/podman:1`);
  td.add(() => direct.cleanup());
  assert.equal(`sha256:${direct.imageId}`, image.configDigest);

  const mirror = await startCountingProxy(upstream.url);
  td.add(() => mirror.stop());
  const viaMirror = await podmanPull('docker.io/library/podman:1', {
    registriesConf: mirrorRegistriesConf('docker.io', 'registry-1.docker.io', mirror.host),
  });
  td.add(() => viaMirror.cleanup());
  assert.equal(`sha256:${viaMirror.imageId}`, image.configDigest);
  assert.ok(mirror.count({ method: 'GET', path: /^\/v2\/library\/podman\/manifests\/1$/ }) >= 1);
});
