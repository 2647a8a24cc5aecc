/**
 * The OCI push API over real HTTP against a tender with a local namespace
 * (`acme/**`), Basic auth from an htpasswd file, and a real token-auth
 * Distribution as the default upstream behind a counting proxy: uploads
 * (monolithic, chunked, resumable), mounts, manifests, tags, the catalog,
 * referrers, deletes, and refusals.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setPassword } from '../src/auth/htpasswd.ts';
import { startCountingProxy, type CountingProxy } from './helpers/counting-proxy.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, sha256, type BuiltImage } from './helpers/images.ts';
import {
  basicAuth,
  blobOf,
  call,
  errorCode,
  MEDIA_OCI_INDEX,
  MEDIA_OCI_MANIFEST,
  memoryImage,
  pushBlob,
  pushMemoryImage,
  putManifest,
  randomBlob,
  type Registry,
} from './helpers/push.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, skipUnlessTools, tempDir, teardown } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const MEDIA_EMPTY = 'application/vnd.oci.empty.v1+json';
const SBOM = 'application/vnd.example.sbom.v1';

describe('push API', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let proxy: CountingProxy;
  let tender: TenderHandle;
  let noDeletes: TenderHandle;
  let cachedImage: BuiltImage;
  /** Authenticated as a user who may push and delete acme/**. */
  let alice: Registry;
  let anonymous: Registry;

  before(async () => {
    upstream = await startDistribution({ auth: 'token' });
    td.add(() => upstream.stop());
    proxy = await startCountingProxy(upstream.url);
    td.add(() => proxy.stop());
    cachedImage = await buildImage({ layerSizes: [64 * 1024, 8 * 1024] });
    td.add(() => removeDir(cachedImage.layoutDir));
    await pushImage(cachedImage, upstream, 'library/base:1');

    const dir = await tempDir('push-api');
    td.add(() => removeDir(dir));
    const htpasswd = join(dir, 'htpasswd');
    await setPassword(htpasswd, 'alice', 'alice-secret', 4);
    const common = {
      upstreams: { hub: { url: proxy.url, dockerHub: true, aliases: ['docker.io'] } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      auth: { htpasswd },
      access: [
        { repositories: 'acme/**', pull: ['$all'], push: ['$authenticated'], delete: ['$authenticated'] },
        { repositories: '**', pull: ['$all'] },
      ],
    };
    tender = await startTender({ ...common, deleteEnabled: true });
    td.add(() => tender.stop());
    noDeletes = await startTender({ ...common, deleteEnabled: false });
    td.add(() => noDeletes.stop());
    alice = { url: tender.url, authorization: basicAuth('alice', 'alice-secret') };
    anonymous = { url: tender.url };
  });
  after(() => td.run());

  /** Every session file in the uploads folder. */
  const uploadFiles = async (): Promise<string[]> => readdir(join(tender.root, '_uploads'));

  async function assertBlob(name: string, digest: string, data: Buffer): Promise<void> {
    const res = await call(anonymous, 'GET', `/v2/${name}/blobs/${digest}`);
    assert.equal(res.status, 200, `GET ${name}@${digest}`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(body.length, data.length);
    assert.ok(body.equals(data), `blob ${digest} in ${name} is intact`);
    assert.equal(res.headers.get('docker-content-digest'), digest);
  }

  async function headStatus(name: string, digest: string): Promise<number> {
    return (await call(anonymous, 'HEAD', `/v2/${name}/blobs/${digest}`)).status;
  }

  test('a monolithic POST ?digest= stores the blob: 201 with Location and Docker-Content-Digest', async () => {
    const blob = randomBlob(100 * 1024);
    const res = await call(alice, 'POST', `/v2/acme/app/blobs/uploads/?digest=${blob.digest}`, {
      body: blob.data,
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('location'), `/v2/acme/app/blobs/${blob.digest}`);
    assert.equal(res.headers.get('docker-content-digest'), blob.digest);
    const head = await call(anonymous, 'HEAD', `/v2/acme/app/blobs/${blob.digest}`);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(blob.data.length));
    await assertBlob('acme/app', blob.digest, blob.data);
    assert.deepEqual(await uploadFiles(), [], 'no session is left behind');
  });

  test('POST, several PATCHes with Content-Range, then PUT ?digest= (following Location each time)', async () => {
    const blob = randomBlob(300 * 1024 + 17);
    const start = await call(alice, 'POST', '/v2/acme/chunked/blobs/uploads/');
    assert.equal(start.status, 202);
    const uuid = start.headers.get('docker-upload-uuid');
    assert.ok(uuid);
    let location = start.headers.get('location');
    assert.equal(location, `/v2/acme/chunked/blobs/uploads/${uuid}`);
    assert.equal(start.headers.get('range'), '0-0');
    const cuts = [0, 100 * 1024, 100 * 1024 + 1, 250 * 1024, blob.data.length];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const [from, to] = [cuts[i]!, cuts[i + 1]!];
      const res = await call(alice, 'PATCH', location!, {
        body: blob.data.subarray(from, to),
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Range': `${from}-${to - 1}` },
      });
      assert.equal(res.status, 202, `chunk ${i}`);
      assert.equal(res.headers.get('range'), `0-${to - 1}`);
      assert.equal(res.headers.get('docker-upload-uuid'), uuid);
      location = res.headers.get('location');
      assert.ok(location);
    }
    assert.equal(await headStatus('acme/chunked', blob.digest), 404, 'not visible before the PUT');
    const done = await call(alice, 'PUT', `${location}?digest=${blob.digest}`);
    assert.equal(done.status, 201);
    assert.equal(done.headers.get('location'), `/v2/acme/chunked/blobs/${blob.digest}`);
    assert.equal(done.headers.get('docker-content-digest'), blob.digest);
    await assertBlob('acme/chunked', blob.digest, blob.data);
  });

  test('a PATCH that does not start where the upload ends gets 416 with the Range held', async () => {
    const blob = randomBlob(10_000);
    const start = await call(alice, 'POST', '/v2/acme/chunked/blobs/uploads/');
    const location = start.headers.get('location')!;
    const first = await call(alice, 'PATCH', location, { body: blob.data.subarray(0, 4000), headers: { 'Content-Range': '0-3999' } });
    assert.equal(first.status, 202);
    const gap = await call(alice, 'PATCH', location, { body: blob.data.subarray(5000), headers: { 'Content-Range': '5000-9999' } });
    assert.equal(gap.status, 416);
    assert.equal(gap.headers.get('range'), '0-3999');
    assert.equal(gap.headers.get('location'), location);
    assert.equal(await errorCode(gap), 'RANGE_INVALID');
    const overlap = await call(alice, 'PATCH', location, { body: blob.data.subarray(3000), headers: { 'Content-Range': '3000-9999' } });
    assert.equal(overlap.status, 416);
    assert.equal(overlap.headers.get('range'), '0-3999');
    await overlap.arrayBuffer();
    const rest = await call(alice, 'PATCH', location, { body: blob.data.subarray(4000), headers: { 'Content-Range': '4000-9999' } });
    assert.equal(rest.status, 202);
    assert.equal(rest.headers.get('range'), '0-9999');
    const done = await call(alice, 'PUT', `${location}?digest=${blob.digest}`);
    assert.equal(done.status, 201);
    await assertBlob('acme/chunked', blob.digest, blob.data);
  });

  test('a PUT with a wrong digest is DIGEST_INVALID and stores nothing', async () => {
    const blob = randomBlob(5000);
    const claimed = sha256('something else');
    const start = await call(alice, 'POST', '/v2/acme/wrong/blobs/uploads/');
    const location = start.headers.get('location')!;
    const res = await call(alice, 'PUT', `${location}?digest=${claimed}`, { body: blob.data, headers: { 'Content-Type': 'application/octet-stream' } });
    assert.equal(res.status, 400);
    assert.equal(await errorCode(res), 'DIGEST_INVALID');
    assert.equal(await headStatus('acme/wrong', claimed), 404);
    assert.equal(await headStatus('acme/wrong', blob.digest), 404);
    const monolithic = await call(alice, 'POST', `/v2/acme/wrong/blobs/uploads/?digest=${claimed}`, { body: blob.data });
    assert.equal(monolithic.status, 400);
    assert.equal(await errorCode(monolithic), 'DIGEST_INVALID');
    assert.equal(await headStatus('acme/wrong', claimed), 404);
    assert.deepEqual(await uploadFiles(), [], 'failed sessions are removed');
  });

  test('GET of an upload gives 204 with its Range; DELETE cancels it (204, then BLOB_UPLOAD_UNKNOWN)', async () => {
    const start = await call(alice, 'POST', '/v2/acme/status/blobs/uploads/');
    const location = start.headers.get('location')!;
    const uuid = start.headers.get('docker-upload-uuid');
    await (await call(alice, 'PATCH', location, { body: Buffer.alloc(1234, 7), headers: { 'Content-Range': '0-1233' } })).arrayBuffer();
    const status = await call(alice, 'GET', location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-1233');
    assert.equal(status.headers.get('docker-upload-uuid'), uuid);
    assert.equal(status.headers.get('location'), location);
    const cancel = await call(alice, 'DELETE', location);
    assert.equal(cancel.status, 204);
    for (const method of ['GET', 'PATCH', 'DELETE']) {
      const gone = await call(alice, method, location, method === 'PATCH' ? { body: 'x' } : {});
      assert.equal(gone.status, 404, method);
      assert.equal(await errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');
    }
    const other = await call(alice, 'POST', '/v2/acme/status/blobs/uploads/');
    const otherRepo = other.headers.get('location')!.replace('/acme/status/', '/acme/elsewhere/');
    const wrongRepo = await call(alice, 'GET', otherRepo);
    assert.equal(wrongRepo.status, 404, 'a session belongs to its repository');
    assert.equal(await errorCode(wrongRepo), 'BLOB_UPLOAD_UNKNOWN');
    await (await call(alice, 'DELETE', other.headers.get('location')!)).arrayBuffer();
  });

  test('an upload polled while it completes is 204 or 404, never a server error', async () => {
    const seen = new Set<number>();
    for (let round = 0; round < 3; round++) {
      const blob = randomBlob(4 * 1024 * 1024);
      const start = await call(alice, 'POST', `/v2/acme/poll-${round}/blobs/uploads/`);
      const location = start.headers.get('location')!;
      await (await call(alice, 'PATCH', location, { body: blob.data })).arrayBuffer();
      let done = false;
      const put = call(alice, 'PUT', `${location}?digest=${blob.digest}`).finally(() => (done = true));
      const poll = async (): Promise<void> => {
        while (!done) {
          const res = await call(alice, 'GET', location);
          seen.add(res.status);
          await res.arrayBuffer();
        }
      };
      await Promise.all([put, poll(), poll(), poll(), poll()]);
      assert.equal((await put).status, 201);
    }
    assert.deepEqual([...seen].filter((s) => s !== 204 && s !== 404), []);
  });

  test('a cross-repository mount from another local repository links the blob without an upload', async () => {
    const blob = randomBlob(20_000);
    await pushBlob(alice, 'acme/source', blob);
    const res = await call(alice, 'POST', `/v2/acme/target/blobs/uploads/?mount=${blob.digest}&from=acme/source`);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('location'), `/v2/acme/target/blobs/${blob.digest}`);
    assert.equal(res.headers.get('docker-content-digest'), blob.digest);
    assert.equal(res.headers.get('docker-upload-uuid'), null);
    assert.deepEqual(await uploadFiles(), []);
    await assertBlob('acme/target', blob.digest, blob.data);
  });

  test('a mount from cached upstream content needs no upstream request', async () => {
    const accept = { Accept: `${MEDIA_OCI_MANIFEST}, ${MEDIA_OCI_INDEX}` };
    const manifest = await call(anonymous, 'GET', '/v2/hub/library/base/manifests/1', { headers: accept });
    assert.equal(manifest.status, 200);
    await manifest.arrayBuffer();
    for (const digest of [cachedImage.configDigest, ...cachedImage.layers.map((l) => l.digest)]) {
      const res = await call(anonymous, 'GET', `/v2/hub/library/base/blobs/${digest}`);
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    const layer = cachedImage.layers[0]!;
    const before = proxy.requests.length;
    const res = await call(alice, 'POST', `/v2/acme/from-cache/blobs/uploads/?mount=${layer.digest}&from=hub/library/base`);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), layer.digest);
    const bytes = await readFile(join(cachedImage.layoutDir, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
    await assertBlob('acme/from-cache', layer.digest, bytes);
    assert.deepEqual(proxy.requests.slice(before), [], 'the upstream saw nothing');
  });

  test('a mount of a blob the source does not hold falls back to an upload (202)', async () => {
    const blob = randomBlob(3000);
    const res = await call(alice, 'POST', `/v2/acme/fallback/blobs/uploads/?mount=${blob.digest}&from=acme/source`);
    assert.equal(res.status, 202);
    const location = res.headers.get('location')!;
    assert.match(location, /^\/v2\/acme\/fallback\/blobs\/uploads\/[0-9a-f-]{36}$/);
    assert.ok(res.headers.get('docker-upload-uuid'));
    const done = await call(alice, 'PUT', `${location}?digest=${blob.digest}`, { body: blob.data });
    assert.equal(done.status, 201);
    await assertBlob('acme/fallback', blob.digest, blob.data);
    // A blob held by a repository the client may not see is no mount source either.
    const unknownSource = await call(alice, 'POST', `/v2/acme/fallback/blobs/uploads/?mount=${blob.digest}&from=acme/never-pushed`);
    assert.equal(unknownSource.status, 202);
    await (await call(alice, 'DELETE', unknownSource.headers.get('location')!)).arrayBuffer();
  });

  test('a manifest PUT stores the image: 201, Location, Docker-Content-Digest, served by tag and digest', async () => {
    const image = memoryImage({ sizes: [2048, 1024] });
    for (const blob of image.blobs) await pushBlob(alice, 'acme/app', blob);
    const res = await putManifest(alice, 'acme/app', '1.0', image.manifest.data, MEDIA_OCI_MANIFEST);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('location'), `/v2/acme/app/manifests/${image.manifest.digest}`);
    assert.equal(res.headers.get('docker-content-digest'), image.manifest.digest);
    assert.equal(res.headers.get('oci-subject'), null);
    for (const ref of ['1.0', image.manifest.digest]) {
      const got = await call(anonymous, 'GET', `/v2/acme/app/manifests/${ref}`, { headers: { Accept: MEDIA_OCI_MANIFEST } });
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('content-type'), MEDIA_OCI_MANIFEST);
      assert.equal(got.headers.get('docker-content-digest'), image.manifest.digest);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(image.manifest.data));
    }
    const byDigest = await putManifest(alice, 'acme/app', image.manifest.digest, image.manifest.data, MEDIA_OCI_MANIFEST);
    assert.equal(byDigest.status, 201, 'a PUT by the right digest is accepted');
  });

  test('manifest PUTs that are refused: missing blob, too large, bad JSON, wrong digest', async () => {
    const image = memoryImage({ sizes: [1000] });
    await pushBlob(alice, 'acme/bad', image.config);
    const missing = await putManifest(alice, 'acme/bad', 'x', image.manifest.data, MEDIA_OCI_MANIFEST);
    assert.equal(missing.status, 404);
    assert.equal(await errorCode(missing), 'MANIFEST_BLOB_UNKNOWN');

    // A blob present in another repository is not enough: it must be in this one (or mounted).
    await pushBlob(alice, 'acme/elsewhere', image.layers[0]!);
    const elsewhere = await putManifest(alice, 'acme/bad', 'x', image.manifest.data, MEDIA_OCI_MANIFEST);
    assert.equal(elsewhere.status, 404);
    assert.equal(await errorCode(elsewhere), 'MANIFEST_BLOB_UNKNOWN');

    const huge = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const tooLarge = await putManifest(alice, 'acme/bad', 'x', huge, MEDIA_OCI_MANIFEST);
    assert.equal(tooLarge.status, 413);
    assert.equal(await errorCode(tooLarge), 'MANIFEST_TOO_LARGE');

    const badJson = await putManifest(alice, 'acme/bad', 'x', '{"schemaVersion": 2, "layers": [', MEDIA_OCI_MANIFEST);
    assert.equal(badJson.status, 400);
    assert.equal(await errorCode(badJson), 'MANIFEST_INVALID');

    await pushBlob(alice, 'acme/bad', image.layers[0]!);
    const wrongDigest = await putManifest(alice, 'acme/bad', sha256('not this'), image.manifest.data, MEDIA_OCI_MANIFEST);
    assert.equal(wrongDigest.status, 400);
    assert.equal(await errorCode(wrongDigest), 'DIGEST_INVALID');

    const tags = await call(anonymous, 'GET', '/v2/acme/bad/manifests/x');
    assert.equal(tags.status, 404, 'no refused PUT left a tag');
    await tags.arrayBuffer();
  });

  test('an OCI index is accepted when its children are in the repository, refused otherwise', async () => {
    const amd = memoryImage({ sizes: [1500] });
    const arm = memoryImage({ sizes: [1600] });
    await pushMemoryImage(alice, 'acme/multi', amd.manifest.digest, amd);
    const index = blobOf(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_OCI_INDEX,
        manifests: [amd, arm].map((img, i) => ({
          mediaType: MEDIA_OCI_MANIFEST,
          digest: img.manifest.digest,
          size: img.manifest.data.length,
          platform: { os: 'linux', architecture: i === 0 ? 'amd64' : 'arm64' },
        })),
      }),
    );
    const early = await putManifest(alice, 'acme/multi', 'latest', index.data, MEDIA_OCI_INDEX);
    assert.equal(early.status, 404);
    assert.equal(await errorCode(early), 'MANIFEST_BLOB_UNKNOWN');
    await pushMemoryImage(alice, 'acme/multi', arm.manifest.digest, arm);
    const res = await putManifest(alice, 'acme/multi', 'latest', index.data, MEDIA_OCI_INDEX);
    assert.equal(res.status, 201);
    assert.equal(res.headers.get('docker-content-digest'), index.digest);
    const got = await call(anonymous, 'GET', '/v2/acme/multi/manifests/latest', { headers: { Accept: MEDIA_OCI_INDEX } });
    assert.equal(got.status, 200);
    assert.equal(got.headers.get('content-type'), MEDIA_OCI_INDEX);
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(index.data));
  });

  test('tags list of a local repository paginates with n and last and a Link header', async () => {
    const image = memoryImage({ sizes: [512] });
    for (const tag of ['e', 'a', 'd', 'b', 'c']) await pushMemoryImage(alice, 'acme/tags', tag, image);
    const all = await call(anonymous, 'GET', '/v2/acme/tags/tags/list');
    assert.equal(all.status, 200);
    assert.equal(all.headers.get('link'), null);
    assert.deepEqual(await all.json(), { name: 'acme/tags', tags: ['a', 'b', 'c', 'd', 'e'] });
    const pages: string[][] = [];
    let next: string | null = '/v2/acme/tags/tags/list?n=2';
    while (next) {
      const res = await call(anonymous, 'GET', next);
      assert.equal(res.status, 200);
      pages.push(((await res.json()) as { tags: string[] }).tags);
      const link = res.headers.get('link');
      next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    }
    assert.deepEqual(pages, [['a', 'b'], ['c', 'd'], ['e']]);
    const after = await call(anonymous, 'GET', '/v2/acme/tags/tags/list?n=10&last=c');
    assert.deepEqual(((await after.json()) as { tags: string[] }).tags, ['d', 'e']);
    const unknown = await call(anonymous, 'GET', '/v2/acme/never/tags/list');
    assert.equal(unknown.status, 404);
    assert.equal(await errorCode(unknown), 'NAME_UNKNOWN');
  });

  test('the catalog lists local and cached repositories, paginated with n and last', async () => {
    const res = await call(anonymous, 'GET', '/v2/_catalog');
    assert.equal(res.status, 200);
    const { repositories } = (await res.json()) as { repositories: string[] };
    assert.ok(repositories.includes('acme/app'), `local: ${repositories.join(' ')}`);
    assert.ok(repositories.includes('hub/library/base'), `cached: ${repositories.join(' ')}`);
    assert.deepEqual(repositories, [...repositories].sort());
    const paged: string[] = [];
    let next: string | null = '/v2/_catalog?n=2';
    let pages = 0;
    while (next) {
      const page = await call(anonymous, 'GET', next);
      assert.equal(page.status, 200);
      const items = ((await page.json()) as { repositories: string[] }).repositories;
      assert.ok(items.length <= 2);
      paged.push(...items);
      pages++;
      const link = page.headers.get('link');
      next = link ? /^<([^>]+)>; rel="next"$/.exec(link)![1]! : null;
    }
    assert.deepEqual(paged, repositories);
    assert.ok(pages >= 2);
  });

  test('referrers: a manifest with a subject is listed with its artifactType, filterable', async () => {
    const subject = memoryImage({ sizes: [700] });
    await pushMemoryImage(alice, 'acme/signed', 'v1', subject);
    const empty = blobOf('{}');
    const sbomLayer = blobOf(JSON.stringify({ packages: ['a', 'b'] }));
    await pushBlob(alice, 'acme/signed', empty);
    await pushBlob(alice, 'acme/signed', sbomLayer);
    const subjectDescriptor = { mediaType: MEDIA_OCI_MANIFEST, digest: subject.manifest.digest, size: subject.manifest.data.length };
    const sbom = blobOf(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_OCI_MANIFEST,
        artifactType: SBOM,
        config: { mediaType: MEDIA_EMPTY, digest: empty.digest, size: 2 },
        layers: [{ mediaType: 'application/json', digest: sbomLayer.digest, size: sbomLayer.data.length }],
        subject: subjectDescriptor,
        annotations: { 'org.example.kind': 'sbom' },
      }),
    );
    const put = await putManifest(alice, 'acme/signed', sbom.digest, sbom.data, MEDIA_OCI_MANIFEST);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('oci-subject'), subject.manifest.digest);
    // No artifactType: the config's media type stands in for it.
    const sigConfig = blobOf('{"sig":true}');
    await pushBlob(alice, 'acme/signed', sigConfig);
    const sig = blobOf(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA_OCI_MANIFEST,
        config: { mediaType: 'application/vnd.example.sig.config', digest: sigConfig.digest, size: sigConfig.data.length },
        layers: [],
        subject: subjectDescriptor,
      }),
    );
    assert.equal((await putManifest(alice, 'acme/signed', sig.digest, sig.data, MEDIA_OCI_MANIFEST)).status, 201);

    type Index = { schemaVersion: number; mediaType: string; manifests: Array<{ digest: string; artifactType?: string; mediaType: string; size: number; annotations?: Record<string, string> }> };
    const list = await call(anonymous, 'GET', `/v2/acme/signed/referrers/${subject.manifest.digest}`);
    assert.equal(list.status, 200);
    assert.equal(list.headers.get('content-type'), MEDIA_OCI_INDEX);
    assert.equal(list.headers.get('oci-filters-applied'), null);
    const index = (await list.json()) as Index;
    assert.equal(index.schemaVersion, 2);
    assert.equal(index.mediaType, MEDIA_OCI_INDEX);
    const byDigest = new Map(index.manifests.map((m) => [m.digest, m]));
    assert.equal(byDigest.size, 2);
    assert.deepEqual(byDigest.get(sbom.digest), {
      mediaType: MEDIA_OCI_MANIFEST,
      digest: sbom.digest,
      size: sbom.data.length,
      artifactType: SBOM,
      annotations: { 'org.example.kind': 'sbom' },
    });
    assert.equal(byDigest.get(sig.digest)?.artifactType, 'application/vnd.example.sig.config');

    const filtered = await call(anonymous, 'GET', `/v2/acme/signed/referrers/${subject.manifest.digest}?artifactType=${encodeURIComponent(SBOM)}`);
    assert.equal(filtered.status, 200);
    assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(((await filtered.json()) as Index).manifests.map((m) => m.digest), [sbom.digest]);

    assert.equal((await call(alice, 'DELETE', `/v2/acme/signed/manifests/${sig.digest}`)).status, 202);
    const afterDelete = await call(anonymous, 'GET', `/v2/acme/signed/referrers/${subject.manifest.digest}`);
    assert.deepEqual(((await afterDelete.json()) as Index).manifests.map((m) => m.digest), [sbom.digest], 'a deleted referrer is no longer listed');
  });

  test('referrers of a digest without any, and of a cached manifest, are an empty index (200)', async () => {
    const none = await call(anonymous, 'GET', `/v2/acme/signed/referrers/${sha256('no referrers')}`);
    assert.equal(none.status, 200);
    assert.equal(none.headers.get('content-type'), MEDIA_OCI_INDEX);
    assert.deepEqual(await none.json(), { schemaVersion: 2, mediaType: MEDIA_OCI_INDEX, manifests: [] });
    // Distribution 2.8 has no referrers API.
    const cached = await call(anonymous, 'GET', `/v2/hub/library/base/referrers/${cachedImage.manifestDigest}`);
    assert.equal(cached.status, 200);
    assert.equal(cached.headers.get('content-type'), MEDIA_OCI_INDEX);
    assert.deepEqual(await cached.json(), { schemaVersion: 2, mediaType: MEDIA_OCI_INDEX, manifests: [] });
  });

  test('with storage.delete.enabled false, deletes are UNSUPPORTED (405)', async () => {
    const other: Registry = { url: noDeletes.url, authorization: alice.authorization! };
    const image = memoryImage({ sizes: [100] });
    const digest = await pushMemoryImage(other, 'acme/keep', 'v1', image);
    for (const path of [`/v2/acme/keep/manifests/${digest}`, '/v2/acme/keep/manifests/v1', `/v2/acme/keep/blobs/${image.layers[0]!.digest}`]) {
      const res = await call(other, 'DELETE', path);
      assert.equal(res.status, 405, path);
      assert.equal(await errorCode(res), 'UNSUPPORTED');
    }
    const still = await call(other, 'GET', '/v2/acme/keep/manifests/v1', { headers: { Accept: MEDIA_OCI_MANIFEST } });
    assert.equal(still.status, 200);
    await still.arrayBuffer();
  });

  test('deletes: a manifest by digest (and its tags), a tag alone, a blob', async () => {
    const image = memoryImage({ sizes: [800] });
    const kept = memoryImage({ sizes: [900] });
    const digest = await pushMemoryImage(alice, 'acme/del', 'v1', image);
    await pushMemoryImage(alice, 'acme/del', 'v1-alias', image);
    const keptDigest = await pushMemoryImage(alice, 'acme/del', 'stay', kept);
    await pushMemoryImage(alice, 'acme/del', 'stay-alias', kept);
    const accept = { Accept: MEDIA_OCI_MANIFEST };

    const del = await call(alice, 'DELETE', `/v2/acme/del/manifests/${digest}`);
    assert.equal(del.status, 202);
    for (const ref of [digest, 'v1', 'v1-alias']) {
      const res = await call(anonymous, 'GET', `/v2/acme/del/manifests/${ref}`, { headers: accept });
      assert.equal(res.status, 404, ref);
      assert.equal(await errorCode(res), 'MANIFEST_UNKNOWN');
    }
    const again = await call(alice, 'DELETE', `/v2/acme/del/manifests/${digest}`);
    assert.equal(again.status, 404);
    assert.equal(await errorCode(again), 'MANIFEST_UNKNOWN');

    const tagDel = await call(alice, 'DELETE', '/v2/acme/del/manifests/stay-alias');
    assert.equal(tagDel.status, 202);
    const tagGone = await call(anonymous, 'GET', '/v2/acme/del/manifests/stay-alias', { headers: accept });
    assert.equal(tagGone.status, 404);
    await tagGone.arrayBuffer();
    const byDigest = await call(anonymous, 'GET', `/v2/acme/del/manifests/${keptDigest}`, { headers: accept });
    assert.equal(byDigest.status, 200, 'deleting a tag keeps the manifest');
    await byDigest.arrayBuffer();
    const tags = await call(anonymous, 'GET', '/v2/acme/del/tags/list');
    assert.deepEqual(((await tags.json()) as { tags: string[] }).tags, ['stay']);

    const layer = image.layers[0]!.digest;
    const blobDel = await call(alice, 'DELETE', `/v2/acme/del/blobs/${layer}`);
    assert.equal(blobDel.status, 202);
    assert.equal(await headStatus('acme/del', layer), 404);
    const blobAgain = await call(alice, 'DELETE', `/v2/acme/del/blobs/${layer}`);
    assert.equal(blobAgain.status, 404);
    assert.equal(await errorCode(blobAgain), 'BLOB_UNKNOWN');
    const anonymousDelete = await call(anonymous, 'DELETE', `/v2/acme/del/manifests/${keptDigest}`);
    assert.equal(anonymousDelete.status, 401);
    await anonymousDelete.arrayBuffer();
  });

  test('pushes without credentials get 401 with a Basic challenge; a wrong password gets 401', async () => {
    const blob = randomBlob(100);
    const requests: Array<[string, string]> = [
      ['POST', '/v2/acme/app/blobs/uploads/'],
      ['POST', `/v2/acme/app/blobs/uploads/?digest=${blob.digest}`],
      ['PUT', '/v2/acme/app/manifests/anon'],
    ];
    for (const [method, path] of requests) {
      const res = await call(anonymous, method, path, { body: blob.data });
      assert.equal(res.status, 401, `${method} ${path}`);
      assert.equal(res.headers.get('www-authenticate'), 'Basic realm="tender"');
      assert.equal(await errorCode(res), 'UNAUTHORIZED');
    }
    const wrong: Registry = { url: tender.url, authorization: basicAuth('alice', 'not-her-password') };
    const res = await call(wrong, 'POST', '/v2/acme/app/blobs/uploads/');
    assert.equal(res.status, 401);
    assert.equal(res.headers.get('www-authenticate'), 'Basic realm="tender"');
    assert.equal(await errorCode(res), 'UNAUTHORIZED');
    assert.equal(await headStatus('acme/app', blob.digest), 404);
  });

  test('pushes into proxied names are DENIED (403), naming the local namespaces', async () => {
    const image = memoryImage({ sizes: [100] });
    const before = proxy.requests.length;
    const attempts: Array<[string, string, Buffer | undefined]> = [
      ['PUT', '/v2/hub/library/x/manifests/1', image.manifest.data],
      ['POST', '/v2/library/x/blobs/uploads/', undefined],
      ['POST', `/v2/x/blobs/uploads/?digest=${image.config.digest}`, image.config.data],
      ['DELETE', `/v2/hub/library/base/manifests/${cachedImage.manifestDigest}`, undefined],
    ];
    for (const [method, path, body] of attempts) {
      const res = await call(alice, method, path, body ? { body, headers: { 'Content-Type': MEDIA_OCI_MANIFEST } } : {});
      assert.equal(res.status, 403, `${method} ${path}`);
      const json = (await res.json()) as { errors: Array<{ code: string; message: string }> };
      assert.equal(json.errors[0]?.code, 'DENIED');
      assert.match(json.errors[0]!.message, /acme\/\*\*/);
    }
    assert.deepEqual(proxy.requests.slice(before), [], 'refusals never reach the upstream');
  });

  test('two monolithic POSTs of the same blob at once both succeed and the blob is intact', async () => {
    const blob = randomBlob(4 * 1024 * 1024 + 3);
    const post = () =>
      call(alice, 'POST', `/v2/acme/race/blobs/uploads/?digest=${blob.digest}`, { body: blob.data, headers: { 'Content-Type': 'application/octet-stream' } });
    const responses = await Promise.all([post(), post()]);
    assert.deepEqual(responses.map((r) => r.status), [201, 201]);
    await assertBlob('acme/race', blob.digest, blob.data);
    assert.deepEqual(await uploadFiles(), []);
  });

  test('skopeo copies an image into a local repository and back', async () => {
    const image = await buildImage({ layerSizes: [200 * 1024] });
    td.add(() => removeDir(image.layoutDir));
    const { manifestDigest } = await pushImage(image, { host: tender.host, pushCredentials: { username: 'alice', password: 'alice-secret' } }, 'acme/skopeo:1');
    assert.equal(manifestDigest, image.manifestDigest);
    const got = await call(anonymous, 'GET', '/v2/acme/skopeo/manifests/1', { headers: { Accept: MEDIA_OCI_MANIFEST } });
    assert.equal(got.headers.get('docker-content-digest'), image.manifestDigest);
    await got.arrayBuffer();
    const layer = image.layers[0]!;
    const bytes = await readFile(join(image.layoutDir, 'blobs', 'sha256', layer.digest.slice('sha256:'.length)));
    await assertBlob('acme/skopeo', layer.digest, bytes);
  });

  test('the upstream never saw a request for a local name', () => {
    assert.ok(proxy.requests.length > 0, 'the upstream was used for cached content');
    const local = proxy.requests.filter((r) => r.path.includes('/acme/'));
    assert.deepEqual(local, []);
  });
});
