/**
 * What operators see: webhooks for pushes, pulls (cache miss and hit) and
 * deletes in Distribution's envelope, surviving a receiver outage and a
 * SIGKILL of tender; and Prometheus metrics that equal a scripted workload.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, type BuiltImage } from './helpers/images.ts';
import { parsePrometheus, promKey } from './helpers/prometheus.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { startReceiver, type WebhookReceiver } from './helpers/webhook-receiver.ts';
import { freePort, removeDir, skipUnlessTools, skopeo, tempDir, teardown, waitFor } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

describe('notifications and metrics', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let receiver: WebhookReceiver;
  let tender: TenderHandle;
  let base: BuiltImage;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    receiver = await startReceiver();
    td.add(() => receiver.close());
    tender = await startTender({
      upstreams: { hub: { url: proxy.url, dockerHub: true } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      access: [{ repositories: '**', pull: ['$all'], push: ['$all'], delete: ['$all'] }],
      deleteEnabled: true,
      notifications: { endpoints: [{ name: 'hooks', url: receiver.url, backoff: '100ms', maxBackoff: '200ms', threshold: 1 }] },
    });
    td.add(() => tender.stop());
    base = await buildImage({ layerSizes: [300 * 1024, 20 * 1024] });
    await pushImage(base, upstream, 'library/base:1');
  });
  after(() => td.run());

  test('a scripted workload produces matching webhook events and metrics', async () => {
    const blobs = [base.configDigest, ...base.layers.map((l) => l.digest)];
    const blobBytes = base.layers.reduce((n, l) => n + l.size, 0);
    const cold = await skopeoPull(`${tender.host}/base:1`);
    td.add(() => removeDir(cold.dir));
    const warm = await skopeoPull(`${tender.host}/base:1`);
    td.add(() => removeDir(warm.dir));
    const local = await buildImage({ layerSizes: [50 * 1024] });
    const pushed = await skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${local.layoutDir}:${local.tag}`, `docker://${tender.host}/acme/app:1`]);
    assert.equal(pushed.code, 0);
    const del = await fetch(`${tender.url}/v2/acme/app/manifests/1`, { method: 'DELETE' });
    assert.equal(del.status, 202);

    // Webhooks: 2 pulls of the manifest and of each blob, pushes of 2 blobs + 1 manifest, 1 delete.
    const expected = 2 * (1 + blobs.length) + 3 + 1;
    await receiver.waitForEvents(expected);
    const events = receiver.events();
    const post = receiver.accepted()[0]!;
    assert.match(String(post.headers['content-type']), /^application\/vnd\.docker\.distribution\.events\.v1\+json/);
    const pulls = events.filter((e) => e.action === 'pull');
    const manifestPulls = pulls.filter((e) => e.target.digest === cold.manifestDigest);
    assert.deepEqual(manifestPulls.map((e) => (e as { tender?: { cache?: string } }).tender?.cache), ['miss', 'hit']);
    for (const d of blobs) {
      const p = pulls.filter((e) => e.target.digest === d);
      assert.equal(p.length, 2, `two pulls of ${d}`);
      assert.equal((p[0] as { tender?: { cache?: string } }).tender?.cache, 'miss');
      assert.equal(p[0]!.target.repository, 'hub/library/base');
      assert.ok(p[0]!.request.id && p[0]!.request.method === 'GET' && p[0]!.source.instanceID);
    }
    const pushes = events.filter((e) => e.action === 'push');
    assert.deepEqual(pushes.map((e) => e.target.repository), ['acme/app', 'acme/app', 'acme/app']);
    const manifestPush = pushes.find((e) => e.target.digest === local.manifestDigest);
    assert.equal(manifestPush?.target.tag, '1');
    assert.equal(manifestPush?.target.mediaType, 'application/vnd.oci.image.manifest.v1+json');
    const deletes = events.filter((e) => e.action === 'delete');
    assert.deepEqual(deletes.map((e) => [e.target.repository, e.target.tag]), [['acme/app', '1']]);
    for (const e of events) assert.match(e.id, /^[0-9a-f-]{36}$/);

    // Metrics.
    assert.ok(tender.running.opsUrl);
    const m = parsePrometheus(await (await fetch(`${tender.running.opsUrl}/metrics`)).text());
    const v = (name: string, labels: Record<string, string>) => m.get(promKey(name, labels)) ?? 0;
    assert.equal(v('tender_cache_requests_total', { kind: 'blob', result: 'miss' }), blobs.length);
    assert.equal(v('tender_cache_requests_total', { kind: 'blob', result: 'hit' }), blobs.length);
    assert.equal(v('tender_cache_requests_total', { kind: 'manifest', result: 'miss' }), 1);
    assert.ok(v('tender_cache_requests_total', { kind: 'manifest', result: 'hit' }) >= 1);
    assert.ok(v('tender_bytes_served_total', { source: 'upstream' }) >= blobBytes);
    assert.ok(v('tender_bytes_served_total', { source: 'cache' }) >= blobBytes);
    assert.ok(v('tender_upstream_bytes_fetched_total', { upstream: 'hub' }) >= blobBytes);
    assert.equal(v('tender_upstream_token_fetches_total', { upstream: 'hub' }), 1);
    // Every request tender sent upstream is counted with its status: the proxy saw the same ones.
    const upstreamGets = proxy.requests.filter((q) => q.method === 'GET' && q.status === 200 && /\/blobs\//.test(q.path)).length;
    assert.equal(v('tender_upstream_requests_total', { upstream: 'hub', method: 'GET', status: '200' }) >= upstreamGets, true);
    assert.equal(upstreamGets, blobs.length, 'one upstream GET per blob');
    assert.equal(v('tender_notification_queue_depth', { endpoint: 'hooks' }), 0);
    assert.ok(v('tender_notification_deliveries_total', { endpoint: 'hooks' }) >= expected);
    const health = await fetch(`${tender.running.opsUrl}/healthz`);
    assert.equal(health.status, 200);
    const ready = await fetch(`${tender.running.opsUrl}/readyz`);
    assert.equal(ready.status, 200);
  });

  test('events queued while the receiver is down survive a SIGKILL of tender and arrive after restart', async () => {
    const hooks = await startReceiver();
    td.add(() => hooks.close());
    await hooks.down();
    const dir = await tempDir('notify-kill');
    td.add(() => removeDir(dir));
    const port = await freePort();
    const file = join(dir, 'tender.yaml');
    await writeFile(
      file,
      JSON.stringify({
        server: { host: '127.0.0.1', port },
        ops: { port: 0 },
        storage: { filesystem: { root: join(dir, 'data') } },
        local: { namespaces: ['acme/**'] },
        access: [{ repositories: '**', pull: ['$all'], push: ['$all'] }],
        upstreams: { hub: { url: proxy.url } },
        notifications: { endpoints: [{ name: 'hooks', url: hooks.url, backoff: '100ms', maxBackoff: '200ms' }] },
      }),
    );
    const start = async () => {
      const child = spawn(process.execPath, [cli, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      td.add(() => {
        if (child.exitCode === null) child.kill('SIGKILL');
      });
      await waitFor('tender to listen', async () => out.includes('tender listening'), 15_000);
      return child;
    };
    const first = await start();
    const image = await buildImage({ layerSizes: [10 * 1024] });
    const pushed = await skopeo(['copy', '--dest-tls-verify=false', '--preserve-digests', `oci:${image.layoutDir}:${image.tag}`, `docker://127.0.0.1:${port}/acme/kill:1`]);
    assert.equal(pushed.code, 0);
    // Give the queue writer its moment to fsync, then kill without warning.
    await new Promise((r) => setTimeout(r, 500));
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    assert.equal(hooks.events().length, 0, 'nothing was delivered before the kill');

    await hooks.up();
    const second = await start();
    await hooks.waitForEvents(3, 20_000);
    const pushes = hooks.events().filter((e) => e.action === 'push' && e.target.repository === 'acme/kill');
    const digests = new Set(pushes.map((e) => e.target.digest));
    assert.ok(digests.has(image.manifestDigest), 'the manifest push arrived');
    for (const l of image.layers) assert.ok(digests.has(l.digest), 'each layer push arrived');
    second.kill('SIGTERM');
    await new Promise((r) => second.once('exit', r));
  });
});
