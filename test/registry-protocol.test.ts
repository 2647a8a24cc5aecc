import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { DigestVerifier, digestOf, parseDigest, requireDigest } from '../src/registry/digest.ts';
import { RegistryError, errorBody, errorCatalogue } from '../src/registry/errors.ts';
import { isAcceptable, parseAccept, MediaTypes } from '../src/registry/mediatypes.ts';
import { isValidName, isValidTag, parseReference } from '../src/registry/names.ts';
import { paginate, parsePageSize } from '../src/registry/pagination.ts';
import { parseRange } from '../src/registry/range.ts';
import { parseManifest } from '../src/registry/manifest.ts';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof RegistryError ? err.code : 'other';
  }
  return undefined;
}

test('digests: parse, reject, verify incrementally', () => {
  const hex = createHash('sha256').update('hello').digest('hex');
  assert.deepEqual(parseDigest(`sha256:${hex}`), { algorithm: 'sha256', hex, value: `sha256:${hex}` });
  assert.equal(parseDigest(`sha256:${hex.slice(1)}`), undefined);
  assert.equal(parseDigest(`sha256:${hex.toUpperCase()}`), undefined);
  assert.equal(parseDigest(`md5:${hex}`), undefined);
  assert.equal(codeOf(() => requireDigest('sha256:xyz')), 'DIGEST_INVALID');
  const v = new DigestVerifier(requireDigest(`sha256:${hex}`));
  v.update(Buffer.from('hel'));
  v.update(Buffer.from('lo'));
  assert.equal(v.finish(), `sha256:${hex}`);
  assert.equal(v.size, 5);
  assert.equal(digestOf(Buffer.from('hello')), `sha256:${hex}`);
});

test('names and tags follow the distribution grammar', () => {
  for (const ok of ['nginx', 'library/nginx', 'a/b/c', 'my-org/my_app', 'a.b/c__d', 'x0/y-z']) assert.ok(isValidName(ok), ok);
  for (const bad of ['', 'Nginx', '/x', 'x/', 'a//b', '../x', 'a/../b', '-x', 'x_', 'a'.repeat(256)]) {
    assert.ok(!isValidName(bad), bad);
  }
  assert.ok(isValidTag('latest') && isValidTag('v1.2.3-rc_1') && isValidTag('_x'));
  assert.ok(!isValidTag('.x') && !isValidTag('-x') && !isValidTag('a'.repeat(129)) && !isValidTag('a/b'));
  assert.deepEqual(parseReference('latest'), { kind: 'tag', tag: 'latest' });
  assert.equal(codeOf(() => parseReference('sha256:abc')), 'DIGEST_INVALID');
  assert.equal(codeOf(() => parseReference('bad tag')), 'TAG_INVALID');
});

test('error catalogue and body', () => {
  const e = new RegistryError('BLOB_UNKNOWN', { detail: { digest: 'd' } });
  assert.equal(e.status, 404);
  assert.deepEqual(JSON.parse(errorBody([e])), {
    errors: [{ code: 'BLOB_UNKNOWN', message: errorCatalogue.BLOB_UNKNOWN.message, detail: { digest: 'd' } }],
  });
  assert.equal(new RegistryError('TOOMANYREQUESTS').status, 429);
  assert.equal(new RegistryError('DENIED').status, 403);
});

test('Accept negotiation', () => {
  assert.equal(parseAccept(undefined), undefined);
  assert.equal(parseAccept('*/*'), undefined);
  const docker = parseAccept(`${MediaTypes.dockerManifest}, ${MediaTypes.dockerManifestList};q=0.9`);
  assert.ok(isAcceptable(docker, MediaTypes.dockerManifest));
  assert.ok(!isAcceptable(docker, MediaTypes.ociIndex));
  assert.ok(isAcceptable(parseAccept('application/json'), MediaTypes.ociIndex), 'no manifest type named: anything');
  assert.ok(isAcceptable(parseAccept([MediaTypes.ociIndex, MediaTypes.ociManifest]), MediaTypes.ociManifest));
});

test('pagination is lexical with n and last', () => {
  const tags = ['b', 'a', 'd', 'c', 'a'];
  assert.deepEqual(paginate(tags, undefined, undefined), { items: ['a', 'b', 'c', 'd'], next: undefined });
  assert.deepEqual(paginate(tags, 2, undefined), { items: ['a', 'b'], next: 'b' });
  assert.deepEqual(paginate(tags, 2, 'b'), { items: ['c', 'd'], next: undefined });
  assert.deepEqual(paginate(tags, 0, undefined), { items: [], next: undefined });
  assert.equal(parsePageSize('50', 10), 10);
  assert.equal(codeOf(() => parsePageSize('-1', 10)), 'PAGINATION_NUMBER_INVALID');
  assert.equal(codeOf(() => parsePageSize('x', 10)), 'PAGINATION_NUMBER_INVALID');
});

test('Range parsing', () => {
  assert.equal(parseRange(undefined, 10), undefined);
  assert.deepEqual(parseRange('bytes=0-0', 10), { start: 0, end: 0 });
  assert.deepEqual(parseRange('bytes=2-', 10), { start: 2, end: 9 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=5-100', 10), { start: 5, end: 9 });
  assert.equal(parseRange('bytes=0-1,4-5', 10), undefined, 'multiple ranges: whole body');
  assert.equal(parseRange('items=0-1', 10), undefined);
  try {
    parseRange('bytes=10-', 10);
    assert.fail('expected 416');
  } catch (err) {
    assert.ok(err instanceof RegistryError);
    assert.equal(err.status, 416);
    assert.equal(err.headers['Content-Range'], 'bytes */10');
  }
});

test('manifest parsing finds children and blobs, and rejects bad input', () => {
  const d = (c: string) => digestOf(Buffer.from(c));
  const image = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociManifest,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: d('c'), size: 1 },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: d('l'), size: 2 }],
  };
  const parsed = parseManifest(Buffer.from(JSON.stringify(image)), MediaTypes.ociManifest);
  assert.deepEqual(parsed.blobs.map((b) => b.digest), [d('c'), d('l')]);
  const index = { schemaVersion: 2, manifests: [{ mediaType: MediaTypes.ociManifest, digest: d('m'), size: 3 }] };
  assert.equal(parseManifest(Buffer.from(JSON.stringify(index)), MediaTypes.ociIndex).manifests.length, 1);
  assert.equal(codeOf(() => parseManifest(Buffer.from('{'), undefined)), 'MANIFEST_INVALID');
  assert.equal(codeOf(() => parseManifest(Buffer.from(JSON.stringify(image)), MediaTypes.dockerManifest)), 'MANIFEST_INVALID');
  const badLayer = { ...image, layers: [{ mediaType: 'x', digest: 'sha256:nope', size: 1 }] };
  assert.equal(codeOf(() => parseManifest(Buffer.from(JSON.stringify(badLayer)), undefined)), 'MANIFEST_INVALID');
});
