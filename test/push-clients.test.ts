/**
 * Private and public images in one place: real clients push into a local
 * namespace with credentials and pull back, beside cached upstream content,
 * and the same pull checks pass for both.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setPassword } from '../src/auth/htpasswd.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, pushImage, type BuiltImage } from './helpers/images.ts';
import { runPullChecks } from './helpers/pull-checks.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, run, skopeo, skipUnlessTools, tempDir, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl', 'podman');
const user = { username: 'ci-bot', password: 'correct horse battery staple' };
const creds = `${user.username}:${user.password}`;

describe('pushes into local namespaces beside the cache', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let cached: BuiltImage;
  let cachedDigest: string;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    const dir = await tempDir('push-auth');
    td.add(() => removeDir(dir));
    const htpasswd = join(dir, 'htpasswd');
    await setPassword(htpasswd, user.username, user.password);
    tender = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true, aliases: ['docker.io'] } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      auth: { htpasswd },
      access: [
        { repositories: 'acme/private/**', pull: ['$authenticated'], push: ['$authenticated'] },
        { repositories: 'acme/**', pull: ['$all'], push: ['$authenticated'] },
        { repositories: '**', pull: ['$all'] },
      ],
    });
    td.add(() => tender.stop());
    cached = await buildImage({ layerSizes: [256 * 1024] });
    cachedDigest = (await pushImage(cached, upstream, 'library/base:1')).manifestDigest;
  });
  after(() => td.run());

  async function skopeoPush(image: BuiltImage, ref: string, extra: string[] = []) {
    const args = ['copy', '--dest-tls-verify=false', '--preserve-digests', ...extra];
    if (image.children) args.push('--all');
    return skopeo([...args, `oci:${image.layoutDir}:${image.tag}`, `docker://${tender.host}/${ref}`], { allowFail: true, timeoutMs: 120_000 });
  }

  test('skopeo pushes an OCI image with credentials; the shared pull checks pass for it and for cached content', async () => {
    const image = await buildImage({ layerSizes: [512 * 1024, 64 * 1024] });
    proxy.reset();
    const pushed = await skopeoPush(image, 'acme/app:1.0', ['--dest-creds', creds]);
    assert.equal(pushed.code, 0, pushed.stderr);
    assert.equal(proxy.count(), 0, 'local content never goes upstream');
    await runPullChecks({ url: tender.url, host: tender.host, name: 'acme/app', tag: '1.0', image, manifestDigest: image.manifestDigest });
    assert.equal(proxy.count(), 0, 'nor is it looked up upstream');
    await runPullChecks({ url: tender.url, host: tender.host, name: 'hub/library/base', tag: '1', image: cached, manifestDigest: cachedDigest });
  });

  test('a Docker schema 2 image and a multi-arch index round-trip with matching digests', async () => {
    const docker = await buildImage({ layerSizes: [128 * 1024] });
    const r1 = await skopeo(
      ['copy', '--dest-tls-verify=false', '--format', 'v2s2', '--dest-creds', creds, `oci:${docker.layoutDir}:${docker.tag}`, `docker://${tender.host}/acme/docker:1`],
      { timeoutMs: 120_000 },
    );
    assert.equal(r1.code, 0);
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${tender.host}/acme/docker:1`]);
    assert.match(raw.stdout, /application\/vnd\.docker\.distribution\.manifest\.v2\+json/);
    const head = await fetch(`${tender.url}/v2/acme/docker/manifests/1`, {
      method: 'HEAD',
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(head.headers.get('content-type'), 'application/vnd.docker.distribution.manifest.v2+json');

    const index = await buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [64 * 1024] });
    const r2 = await skopeoPush(index, 'acme/multi:1', ['--dest-creds', creds]);
    assert.equal(r2.code, 0, r2.stderr);
    await runPullChecks({ url: tender.url, host: tender.host, name: 'acme/multi', tag: '1', image: index, manifestDigest: index.manifestDigest });
  });

  test('pushes without or with wrong credentials get 401; private names need credentials to pull', async () => {
    const image = await buildImage({ layerSizes: [16 * 1024] });
    const anonymous = await skopeoPush(image, 'acme/app:anon');
    assert.notEqual(anonymous.code, 0);
    assert.match(anonymous.stderr, /401|unauthorized|authentication required/i);
    const wrong = await skopeoPush(image, 'acme/app:wrong', ['--dest-creds', `${user.username}:nope`]);
    assert.notEqual(wrong.code, 0);
    assert.match(wrong.stderr, /401|unauthorized|authentication required/i);
    const res = await fetch(`${tender.url}/v2/acme/app/blobs/uploads/`, { method: 'POST' });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Basic realm="tender"/);

    const priv = await skopeoPush(image, 'acme/private/secret:1', ['--dest-creds', creds]);
    assert.equal(priv.code, 0, priv.stderr);
    const anonPull = await fetch(`${tender.url}/v2/acme/private/secret/manifests/1`);
    assert.equal(anonPull.status, 401);
    await runPullChecks({ url: tender.url, host: tender.host, name: 'acme/private/secret', tag: '1', image, manifestDigest: image.manifestDigest, creds });
  });

  test('a push into a proxied namespace is refused with DENIED naming the local namespaces', async () => {
    const image = await buildImage({ layerSizes: [16 * 1024] });
    proxy.reset();
    const r = await skopeoPush(image, 'hub/library/base:mine', ['--dest-creds', creds]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /denied|403/i);
    const res = await fetch(`${tender.url}/v2/library/base/manifests/mine`, {
      method: 'PUT',
      headers: { Authorization: `Basic ${Buffer.from(creds).toString('base64')}`, 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
      body: '{}',
    });
    assert.equal(res.status, 403);
    const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
    assert.equal(body.errors[0]?.code, 'DENIED');
    assert.match(body.errors[0]?.message ?? '', /acme\/\*\*/);
    assert.equal(proxy.count({ method: 'PUT' }) + proxy.count({ method: 'POST' }) + proxy.count({ method: 'PATCH' }), 0, 'nothing pushed upstream');
  });

  test('pushing an image built on a cached base mounts the base layers instead of uploading them', async () => {
    // The cached base is in tender (pulled above); an image reusing its layer is pushed with a mount from the cache.
    const layer = cached.layers[0]!.digest;
    const res = await fetch(`${tender.url}/v2/acme/derived/blobs/uploads/?mount=${layer}&from=hub/library/base`, {
      method: 'POST',
      headers: { Authorization: `Basic ${Buffer.from(creds).toString('base64')}` },
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), layer);
    const head = await fetch(`${tender.url}/v2/acme/derived/blobs/${layer}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  });

  test('podman pushes with credentials and pulls back the same image', async () => {
    const dir = await tempDir('podman-push');
    td.add(() => removeDir(dir));
    const image = await buildImage({ layerSizes: [256 * 1024] });
    const storageConf = join(dir, 'storage.conf');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(storageConf, `[storage]\ndriver = "vfs"\nrunroot = "${dir}/run"\ngraphroot = "${dir}/graph"\n`);
    await writeFile(join(dir, 'registries.conf'), 'unqualified-search-registries = []\n');
    await writeFile(join(dir, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    const env = { CONTAINERS_STORAGE_CONF: storageConf, CONTAINERS_REGISTRIES_CONF: join(dir, 'registries.conf'), TMPDIR: dir };
    const podman = (args: string[]) =>
      run('podman', ['--cgroup-manager=cgroupfs', '--events-backend=file', `--tmpdir=${dir}/tmp`, ...args], { env, timeoutMs: 180_000 });
    const policy = `--signature-policy=${dir}/policy.json`;
    // Get the image into podman's store (from tender, where skopeo put it), then push it under a new name.
    const seeded = await skopeoPush(image, 'acme/podman-seed:1', ['--dest-creds', creds]);
    assert.equal(seeded.code, 0, seeded.stderr);
    await podman(['pull', '--quiet', '--tls-verify=false', policy, `${tender.host}/acme/podman-seed:1`]);
    await podman(['tag', `${tender.host}/acme/podman-seed:1`, `${tender.host}/acme/podman:1`]);
    const pushed = await podman(['push', '--tls-verify=false', policy, '--creds', creds, `${tender.host}/acme/podman:1`]);
    assert.equal(pushed.code, 0);
    const refused = await run(
      'podman',
      ['--cgroup-manager=cgroupfs', '--events-backend=file', `--tmpdir=${dir}/tmp`, 'push', '--tls-verify=false', policy, `${tender.host}/acme/podman:anon`],
      { env, allowFail: true, timeoutMs: 60_000 },
    );
    assert.notEqual(refused.code, 0, 'podman push without credentials is refused');
    await podman(['rmi', '--all', '--force']);
    const { stdout } = await podman(['pull', '--quiet', '--tls-verify=false', policy, `${tender.host}/acme/podman:1`]);
    assert.equal(`sha256:${stdout.trim().split('\n').pop()}`, image.configDigest, 'podman image ID is the config digest');
  });
});
