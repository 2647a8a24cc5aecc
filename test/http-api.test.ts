/**
 * The v2 read API over real HTTP: status codes, headers and OCI error bodies
 * as clients expect them, in front of a real Distribution.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, buildIndex, pushImage, type BuiltImage } from './helpers/images.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { skipUnlessTools, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function errorCode(res: Response): Promise<string | undefined> {
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { errors: Array<{ code: string; message: string }> };
  assert.equal(typeof body.errors[0]?.message, 'string');
  return body.errors[0]?.code;
}

describe('v2 HTTP API', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let image: BuiltImage;
  let layerBytes: Buffer;
  const v2 = (path: string) => `${tender.url}/v2/${path}`;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    tender = await startTender({
      upstreams: { up: { url: proxy.url, aliases: ['registry.example.test'] } },
      defaultUpstream: 'up',
    });
    td.add(() => tender.stop());
    image = await buildImage({ layerSizes: [300 * 1024] });
    await pushImage(image, upstream, 'acme/app:1.0');
    for (const tag of ['a', 'b', 'c', 'd', 'e']) await pushImage(image, upstream, `acme/app:${tag}`);
    const layer = image.layers[0]!;
    layerBytes = await readFile(join(image.layoutDir, 'blobs', 'sha256', layer.digest.slice(7)));
  });
  after(() => td.run());

  test('GET /v2/ answers 200 with the API version header', async () => {
    const res = await fetch(v2(''));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.deepEqual(await res.json(), {});
  });

  test('manifests by tag and digest carry digest, exact type, length and ETag', async () => {
    const res = await fetch(v2('acme/app/manifests/1.0'), { headers: { Accept: `${OCI_MANIFEST}, ${OCI_INDEX}` } });
    assert.equal(res.status, 200);
    const body = Buffer.from(await res.arrayBuffer());
    const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
    assert.equal(digest, image.manifestDigest);
    assert.equal(res.headers.get('content-type'), OCI_MANIFEST);
    assert.equal(res.headers.get('docker-content-digest'), digest);
    assert.equal(res.headers.get('content-length'), String(body.length));
    assert.equal(res.headers.get('etag'), `"${digest}"`);

    const head = await fetch(v2(`acme/app/manifests/${digest}`), { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(body.length));
    assert.equal(head.headers.get('docker-content-digest'), digest);

    const notModified = await fetch(v2(`acme/app/manifests/${digest}`), { headers: { 'If-None-Match': `"${digest}"` } });
    assert.equal(notModified.status, 304);
  });

  test('a warm hit (answered before Koa) carries exactly the headers of the cold answer', async () => {
    const image2 = await buildImage({ layerSizes: [1024] });
    await pushImage(image2, upstream, 'acme/warm:1');
    const headersOf = (res: Response) =>
      Object.fromEntries([...res.headers].filter(([k]) => !['date', 'x-request-id', 'keep-alive', 'connection'].includes(k)));
    const accept = { Accept: OCI_MANIFEST };
    const cold = await fetch(v2('acme/warm/manifests/1'), { headers: accept });
    const coldBody = Buffer.from(await cold.arrayBuffer());
    const warm = await fetch(v2('acme/warm/manifests/1'), { headers: accept });
    const warmBody = Buffer.from(await warm.arrayBuffer());
    assert.deepEqual(headersOf(warm), headersOf(cold));
    assert.ok(warmBody.equals(coldBody));
    const warmHead = await fetch(v2('acme/warm/manifests/1'), { method: 'HEAD', headers: accept });
    assert.deepEqual(headersOf(warmHead), headersOf(cold));
    const sources = tender.logs
      .filter((l) => l.msg === 'request' && l.path === '/v2/acme/warm/manifests/1')
      .map((l) => l.source);
    assert.deepEqual(sources, ['upstream', 'cache', 'cache']);
  });

  test('a client whose Accept excludes the stored type gets MANIFEST_UNKNOWN, not unreadable bytes', async () => {
    const index = await buildIndex({ platforms: ['amd64', 'arm64'], layerSizes: [1024] });
    await pushImage(index, upstream, 'acme/multi:1');
    const res = await fetch(v2('acme/multi/manifests/1'), {
      headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
    });
    assert.equal(res.status, 404);
    assert.equal(await errorCode(res), 'MANIFEST_UNKNOWN');
    const ok = await fetch(v2('acme/multi/manifests/1'), { headers: { Accept: OCI_INDEX } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('content-type'), OCI_INDEX);
    await ok.arrayBuffer();
  });

  test('blobs: whole, HEAD, ranges (206) and unsatisfiable ranges (416)', async () => {
    const layer = image.layers[0]!;
    const url = v2(`acme/app/blobs/${layer.digest}`);
    const head = await fetch(url, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(layer.size));
    assert.equal(head.headers.get('docker-content-digest'), layer.digest);

    const whole = await fetch(url);
    assert.equal(whole.status, 200);
    assert.equal(whole.headers.get('accept-ranges'), 'bytes');
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(layerBytes));

    const part = await fetch(url, { headers: { Range: 'bytes=100-1099' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 100-1099/${layer.size}`);
    assert.ok(Buffer.from(await part.arrayBuffer()).equals(layerBytes.subarray(100, 1100)));

    const suffix = await fetch(url, { headers: { Range: 'bytes=-10' } });
    assert.equal(suffix.status, 206);
    assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(layerBytes.subarray(layer.size - 10)));

    const bad = await fetch(url, { headers: { Range: `bytes=${layer.size}-` } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), `bytes */${layer.size}`);
    assert.equal(await errorCode(bad), 'RANGE_INVALID');
  });

  test('a range of a blob that is not cached yet is served while it downloads', async () => {
    const fresh = await buildImage({ layerSizes: [200 * 1024] });
    await pushImage(fresh, upstream, 'acme/ranged:1');
    const layer = fresh.layers[0]!;
    const bytes = await readFile(join(fresh.layoutDir, 'blobs', 'sha256', layer.digest.slice(7)));
    const res = await fetch(v2(`acme/ranged/blobs/${layer.digest}`), { headers: { Range: 'bytes=10-19' } });
    assert.equal(res.status, 206);
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(bytes.subarray(10, 20)));
  });

  test('tags list paginates with n and last, and a Link to the next page', async () => {
    const all = await fetch(v2('acme/app/tags/list'));
    assert.deepEqual(await all.json(), { name: 'acme/app', tags: ['1.0', 'a', 'b', 'c', 'd', 'e'] });
    const first = await fetch(v2('acme/app/tags/list?n=2'));
    assert.deepEqual(await first.json(), { name: 'acme/app', tags: ['1.0', 'a'] });
    assert.equal(first.headers.get('link'), '</v2/acme/app/tags/list?n=2&last=a>; rel="next"');
    const next = await fetch(v2('acme/app/tags/list?n=2&last=a'));
    assert.deepEqual(((await next.json()) as { tags: string[] }).tags, ['b', 'c']);
    const bad = await fetch(v2('acme/app/tags/list?n=-3'));
    assert.equal(bad.status, 400);
    assert.equal(await errorCode(bad), 'PAGINATION_NUMBER_INVALID');
  });

  test('errors use the OCI body with the right code and status', async () => {
    const cases: Array<[string, RequestInit, number, string]> = [
      ['nope', {}, 404, 'NOT_FOUND'],
      ['acme/app/manifests/missing', {}, 404, 'MANIFEST_UNKNOWN'],
      ['acme/app/manifests/bad%20tag', {}, 400, 'TAG_INVALID'],
      ['Bad_Name/manifests/1', {}, 400, 'NAME_INVALID'],
      ['acme/app/blobs/sha256:1234', {}, 400, 'DIGEST_INVALID'],
      [`acme/app/blobs/sha256:${'0'.repeat(64)}`, {}, 404, 'BLOB_UNKNOWN'],
      ['acme/app/manifests/1.0', { method: 'PUT', body: '{}' }, 403, 'DENIED'],
      ['acme/app/blobs/uploads/', { method: 'POST' }, 403, 'DENIED'],
      ['acme/app/manifests/1.0', { method: 'DELETE' }, 403, 'DENIED'],
      ['acme/app/tags/list', { method: 'POST' }, 405, 'UNSUPPORTED'],
      ['', { method: 'POST' }, 405, 'UNSUPPORTED'],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await fetch(v2(path), init);
      assert.equal(res.status, status, `${init.method ?? 'GET'} ${path}`);
      assert.equal(await errorCode(res), code, `${init.method ?? 'GET'} ${path}`);
    }
  });

  test('an unconfigured ns or name is refused without any upstream connection', async () => {
    const other = await startTender({ upstreams: { up: { url: proxy.url } }, defaultUpstream: '' });
    td.add(() => other.stop());
    proxy.reset();
    const byNs = await fetch(`${other.url}/v2/library/nginx/manifests/latest?ns=evil.example.com`);
    assert.equal(byNs.status, 404);
    assert.equal(await errorCode(byNs), 'NAME_UNKNOWN');
    const byName = await fetch(`${other.url}/v2/library/nginx/manifests/latest`);
    assert.equal(await errorCode(byName), 'NAME_UNKNOWN');
    const byAlias = await fetch(`${other.url}/v2/acme/app/manifests/1.0?ns=up`, { method: 'HEAD' });
    assert.equal(byAlias.status, 200, 'a configured ns works');
    assert.equal(proxy.count({ path: /library\/nginx/ }), 0);
  });
});
