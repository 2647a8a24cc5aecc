/**
 * The pull checks every image served by tender must pass, whether it is
 * cached from an upstream or pushed into a local namespace: one shared body,
 * run against both.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { skopeoPull } from './clients.ts';
import type { BuiltImage } from './images.ts';
import { removeDir } from './tools.ts';

export interface PullTarget {
  /** tender's base URL and host:port. */
  url: string;
  host: string;
  /** The repository path as clients name it (e.g. `acme/app` or `hub/library/alpine`). */
  name: string;
  tag: string;
  /** What was pushed (to tender or to the upstream). */
  image: BuiltImage;
  /** The manifest digest the registry serves. */
  manifestDigest: string;
  /** skopeo --src-creds, when pulls need credentials. */
  creds?: string;
}

export async function runPullChecks(t: PullTarget): Promise<void> {
  const auth: Record<string, string> = t.creds ? { Authorization: `Basic ${Buffer.from(t.creds).toString('base64')}` } : {};
  // skopeo by tag and by digest: every blob arrives and verifies.
  for (const ref of [`${t.host}/${t.name}:${t.tag}`, `${t.host}/${t.name}@${t.manifestDigest}`]) {
    const r = await skopeoPull(ref, { all: t.image.children !== undefined, ...(t.creds ? { creds: t.creds } : {}) });
    try {
      assert.equal(r.manifestDigest, t.manifestDigest, ref);
      for (const l of t.image.layers) assert.ok(r.blobs.includes(l.digest), `${ref} has ${l.digest}`);
    } finally {
      await removeDir(r.dir);
    }
  }
  // Manifest headers by tag: digest, exact type, length.
  const accept = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json';
  const m = await fetch(`${t.url}/v2/${t.name}/manifests/${t.tag}`, { headers: { Accept: accept, ...auth } });
  assert.equal(m.status, 200);
  const body = Buffer.from(await m.arrayBuffer());
  assert.equal(`sha256:${createHash('sha256').update(body).digest('hex')}`, t.manifestDigest);
  assert.equal(m.headers.get('docker-content-digest'), t.manifestDigest);
  assert.equal(m.headers.get('content-length'), String(body.length));
  assert.match(m.headers.get('content-type') ?? '', /^application\/vnd\.(oci|docker)\./);
  // A blob range.
  const layer = t.image.layers[0]!;
  const part = await fetch(`${t.url}/v2/${t.name}/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-9', ...auth } });
  assert.equal(part.status, 206);
  assert.equal(part.headers.get('content-range'), `bytes 0-9/${layer.size}`);
  assert.equal((await part.arrayBuffer()).byteLength, 10);
  // Tags list names the tag.
  const tags = await fetch(`${t.url}/v2/${t.name}/tags/list`, { headers: auth });
  assert.equal(tags.status, 200);
  assert.ok(((await tags.json()) as { tags: string[] }).tags.includes(t.tag));
}
