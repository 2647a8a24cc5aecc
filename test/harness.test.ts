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
import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { makeTls } from './helpers/tls.ts';
import { removeDir, skipUnlessTools, teardown, tempDir, toolAvailable } from './helpers/tools.ts';

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

void test('skipUnlessTools skips locally and throws under CI=true', () => {
  const saved = process.env.CI;
  try {
    delete process.env.CI;
    assert.equal(skipUnlessTools('sh'), false);
    assert.match(String(skipUnlessTools('no-such-tool-xyz')), /no-such-tool-xyz/);
    process.env.CI = 'true';
    assert.throws(() => skipUnlessTools('no-such-tool-xyz'), /CI=true/);
    assert.equal(toolAvailable('no-such-tool-xyz'), false);
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
});

void test('token issuer: scopes, anonymous pull only, push for the right credentials, x5c header', { skip: skipUnlessTools('docker-registry', 'openssl'), timeout: 30_000 }, async () => {
  const { upstream } = await tokenAuthUpstream();
  const issuer = upstream.issuer;
  assert.ok(issuer);
  const url = `${issuer.realm}?service=${issuer.service}&scope=repository:a/b:pull,push&scope=repository:c:pull`;
  const decode = (jwt: string): [Record<string, unknown>, Record<string, unknown>] => {
    const [h = '', c = ''] = jwt.split('.');
    return [JSON.parse(Buffer.from(h, 'base64url').toString()), JSON.parse(Buffer.from(c, 'base64url').toString())];
  };
  const before = issuer.tokensIssued();
  const anon = (await (await fetch(url)).json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
  assert.equal(anon.token, anon.access_token);
  assert.ok(anon.expires_in > 0 && !Number.isNaN(Date.parse(anon.issued_at)));
  const [header, claims] = decode(anon.token);
  assert.equal(header.alg, 'RS256');
  assert.equal(header.typ, 'JWT');
  const x5c = header.x5c as string[];
  assert.ok(new X509Certificate(Buffer.from(x5c[0] ?? '', 'base64')).subject.includes('CN=issuer'));
  assert.equal(claims.aud, issuer.service);
  for (const k of ['iss', 'sub', 'exp', 'nbf', 'iat', 'jti']) assert.ok(k in claims, `claim ${k}`);
  assert.deepEqual(claims.access, [
    { type: 'repository', name: 'a/b', actions: ['pull'] },
    { type: 'repository', name: 'c', actions: ['pull'] },
  ]);

  const basic = (u: string, p: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
  const { username, password } = upstream.pushCredentials;
  const pusher = (await (await fetch(url, { headers: basic(username, password) })).json()) as { token: string };
  assert.deepEqual((decode(pusher.token)[1].access as Array<{ actions: string[] }>)[0]?.actions, ['pull', 'push']);
  assert.equal((await fetch(url, { headers: basic(username, 'wrong') })).status, 401);
  assert.equal(issuer.tokensIssued(), before + 2);

  const registry = await fetch(`${upstream.url}/v2/a/b/tags/list`, { headers: { authorization: `Bearer ${anon.token}` } });
  assert.equal(registry.status, 404, 'Distribution accepted the token (the repository just does not exist)');
  await registry.body?.cancel();
});

void test('Distribution as a pull-through cache (proxyRemoteUrl) of the token-auth upstream', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const { upstream, proxy } = await tokenAuthUpstream();
  const image = await built(buildImage({ layerSizes: [64_000] }));
  await pushImage(image, upstream, 'team/cached:1');
  const cache = await startDistribution({ auth: 'none', proxyRemoteUrl: proxy.url });
  td.add(() => cache.stop());
  proxy.reset();
  const first = await skopeoPull(`${cache.host}/team/cached:1`);
  td.add(() => removeDir(first.dir));
  assert.equal(first.manifestDigest, image.manifestDigest);
  const layerPath = new RegExp(`/blobs/${image.layers[0]?.digest}$`);
  assert.ok(proxy.count({ method: 'GET', path: layerPath }) >= 1, 'the cache fetched the layer upstream');
  proxy.reset();
  const second = await skopeoPull(`${cache.host}/team/cached:1`);
  td.add(() => removeDir(second.dir));
  assert.equal(proxy.count({ method: 'GET', path: layerPath }), 0, 'the second pull is served from the cache');
});

void test('makeTls: Distribution over HTTPS, verified by skopeo with the CA', { skip: skipUnlessTools('docker-registry', 'skopeo', 'openssl'), timeout: 60_000 }, async () => {
  const dir = await tempDir('tls');
  td.add(() => removeDir(dir));
  const tls = await makeTls(dir);
  assert.equal(tls.caPem, await readFile(tls.caCert, 'utf8'));
  const san = new X509Certificate(await readFile(tls.cert)).subjectAltName ?? '';
  assert.match(san, /IP Address:127\.0\.0\.1/);
  assert.match(san, /DNS:localhost/);
  const secure = await startDistribution({ auth: 'none', tls: { cert: tls.cert, key: tls.key } });
  td.add(() => secure.stop());
  assert.ok(secure.url.startsWith('https://'));
  const image = await built(buildImage({ layerSizes: [1000] }));
  const creds = { host: secure.host, pushCredentials: secure.pushCredentials };
  await pushImage(image, creds, 'tls/app:1');
  const raw = await skopeoInspectRaw(`${secure.host}/tls/app:1`, { tlsVerify: true, certDir: tls.certDir });
  assert.equal(sha256(raw), image.manifestDigest);
  await assert.rejects(skopeoInspectRaw(`${secure.host}/tls/app:1`, { tlsVerify: true }), /certificate/);
});
