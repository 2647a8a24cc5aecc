/**
 * Two tender replicas sharing one data root and one Redis: tag freshness and
 * upstream tokens live in Redis, so what one replica learned, the other uses.
 * Also a restart on the default in-process metadata: cached tags survive in
 * storage and are revalidated, not re-downloaded.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@keyv/redis';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage } from './helpers/images.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startTender } from './helpers/tender.ts';
import { removeDir, skipUnlessTools, tempDir, teardown } from './helpers/tools.ts';

const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl', 'redis-server');

describe('shared state', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
  });
  after(() => td.run());

  test('replicas on one Redis share tag freshness and tokens', async () => {
    const namespace = `tender-test-${process.pid}-${Date.now()}`;
    td.add(async () => {
      const client = createClient({ url: redisUrl });
      await client.connect();
      const keys = await client.keys(`${namespace}:*`);
      if (keys.length > 0) await client.del(keys);
      await client.close();
    });
    const root = await tempDir('shared-root');
    td.add(() => removeDir(root));
    const options = {
      upstreams: { hub: { url: proxy.url, dockerHub: true, tagTtl: '1h' } },
      defaultUpstream: 'hub',
      meta: { driver: 'redis' as const, redis: { url: redisUrl, namespace } },
      root,
    };
    const a = await startTender(options);
    td.add(() => a.stop());
    const b = await startTender(options);
    td.add(() => b.stop());

    const image = await buildImage({ layerSizes: [128 * 1024] });
    const { manifestDigest } = await pushImage(image, upstream, 'acme/shared:1');
    proxy.reset();
    const tokens = upstream.issuer?.tokensIssued() ?? 0;
    const first = await skopeoPull(`${a.host}/acme/shared:1`);
    td.add(() => removeDir(first.dir));
    assert.equal(first.manifestDigest, manifestDigest);
    const fromA = proxy.count();
    assert.ok(fromA > 0);
    assert.equal((upstream.issuer?.tokensIssued() ?? 0) - tokens, 1);

    const second = await skopeoPull(`${b.host}/acme/shared:1`);
    td.add(() => removeDir(second.dir));
    assert.equal(second.manifestDigest, manifestDigest);
    assert.equal(proxy.count(), fromA, 'replica B asked the upstream nothing: fresh tag in Redis, blobs in shared storage');

    // A new tag in the same repository on B reuses the token A fetched.
    await pushImage(image, upstream, 'acme/shared:2');
    const tokensBefore = upstream.issuer?.tokensIssued() ?? 0;
    const third = await fetch(`${b.url}/v2/acme/shared/manifests/2`);
    assert.equal(third.status, 200);
    await third.arrayBuffer();
    assert.equal((upstream.issuer?.tokensIssued() ?? 0) - tokensBefore, 0, 'token shared through Redis');
  });

  test('after a restart on in-process metadata, cached tags are revalidated with a HEAD, not re-downloaded', async () => {
    const root = await tempDir('restart-root');
    td.add(() => removeDir(root));
    const options = { upstreams: { hub: { url: proxy.url, dockerHub: true } }, defaultUpstream: 'hub', root };
    const image = await buildImage({ layerSizes: [128 * 1024] });
    const { manifestDigest } = await pushImage(image, upstream, 'acme/restart:1');
    const before = await startTender(options);
    const r1 = await skopeoPull(`${before.host}/acme/restart:1`);
    td.add(() => removeDir(r1.dir));
    await before.stop();

    const after = await startTender(options);
    td.add(() => after.stop());
    proxy.reset();
    const r2 = await skopeoPull(`${after.host}/acme/restart:1`);
    td.add(() => removeDir(r2.dir));
    assert.equal(r2.manifestDigest, manifestDigest);
    const heads = proxy.requests.filter((q) => q.method === 'HEAD' && /\/manifests\/1$/.test(q.path) && q.status !== 401);
    assert.equal(heads.length, 1, 'one revalidation (besides the token challenge)');
    assert.equal(proxy.count({ method: 'GET', path: /\/blobs\// }), 0, 'no blob fetched again');
    assert.equal(proxy.count({ method: 'GET', path: /\/manifests\// }), 0, 'no manifest fetched again');
  });
});
