/**
 * Real container runtimes pulling through tender: containerd as a Kubernetes
 * node mirror (hosts.toml → `?ns=docker.io`), podman through the default
 * route and through a registries.conf mirror, skopeo over verified TLS.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, pushImage, type BuiltImage } from './helpers/images.ts';
import { ctrImageList, ctrPull, mirrorRegistriesConf, podmanPull, skopeoPull, startContainerd, writeHostsToml } from './helpers/clients.ts';
import { makeTls } from './helpers/tls.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, skipUnlessTools, tempDir, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl', 'containerd', 'ctr', 'podman');

describe('real clients through tender', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let busybox: BuiltImage;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    tender = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true, aliases: ['docker.io'] } },
      defaultUpstream: 'hub',
    });
    td.add(() => tender.stop());
    busybox = await buildImage({ layerSizes: [512 * 1024, 64 * 1024] });
    await pushImage(busybox, upstream, 'library/busybox:1.36');
  });
  after(() => td.run());

  test('containerd pulls docker.io/library images through a hosts.toml mirror (?ns=docker.io)', async () => {
    const daemon = await startContainerd();
    td.add(() => daemon.stop());
    const hostsDir = await tempDir('hosts');
    td.add(() => removeDir(hostsDir));
    await writeHostsToml(hostsDir, { server: 'https://registry-1.docker.io', mirror: tender.url, namespace: 'docker.io' });
    const index = await buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [256 * 1024] });
    const { manifestDigest } = await pushImage(index, upstream, 'library/alpine:3.20');
    const before = tender.logs.length;
    await ctrPull(daemon, 'docker.io/library/alpine:3.20', hostsDir, { platform: 'linux/amd64' });
    const images = await ctrImageList(daemon);
    const pulled = images.find((i) => i.ref === 'docker.io/library/alpine:3.20');
    assert.ok(pulled, `containerd lists the image: ${JSON.stringify(images)}`);
    assert.equal(pulled.digest, manifestDigest);
    const paths = tender.logs.slice(before).filter((l) => l.msg === 'request').map((l) => String(l.path));
    assert.ok(paths.some((p) => p === '/v2/library/alpine/manifests/3.20'), 'containerd asked tender');
    const amd64 = index.children?.find((c) => c.platform?.architecture === 'amd64');
    for (const l of amd64?.layers ?? []) {
      assert.equal(proxy.count({ method: 'GET', path: new RegExp(`/blobs/${l.digest}$`) }), 1);
    }
  });

  test('podman pulls through the default route, and through a registries.conf mirror', async () => {
    const direct = await podmanPull(`${tender.host}/busybox:1.36`);
    td.add(() => direct.cleanup());
    assert.equal(`sha256:${direct.imageId}`, busybox.configDigest, 'podman image ID is the config digest');

    const conf = mirrorRegistriesConf('docker.io', 'registry-1.docker.io', tender.host);
    const mirrored = await podmanPull('docker.io/library/busybox:1.36', { registriesConf: conf });
    td.add(() => mirrored.cleanup());
    assert.equal(`sha256:${mirrored.imageId}`, busybox.configDigest);
  });

  test('over TLS, skopeo verifies tender\'s certificate with the test CA', async () => {
    const dir = await tempDir('tls');
    td.add(() => removeDir(dir));
    const tls = await makeTls(dir);
    const secure = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true } },
      defaultUpstream: 'hub',
      tls: { cert: tls.cert, key: tls.key },
    });
    td.add(() => secure.stop());
    assert.match(secure.url, /^https:/);
    const certDir = join(dir, 'certs');
    await mkdir(certDir);
    await copyFile(tls.caCert, join(certDir, 'ca.crt'));
    const r = await skopeoPull(`${secure.host}/busybox:1.36`, { tlsVerify: true, certDir });
    td.add(() => removeDir(r.dir));
    assert.equal(r.manifestDigest, busybox.manifestDigest);
    await assert.rejects(skopeoPull(`${secure.host}/busybox:1.36`, { tlsVerify: true }), 'an unknown CA is refused');
  });
});
