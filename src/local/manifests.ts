import { digestOf, parseDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import { parseManifest, type Descriptor } from '../registry/manifest.ts';
import { MediaTypes } from '../registry/mediatypes.ts';
import type { Reference } from '../registry/names.ts';
import type { ManifestResult } from '../proxy/manifests.ts';
import type { LocalRoute } from '../routing.ts';
import type { ContentStore, StoredManifest } from '../store/content-store.ts';

export interface PushedManifest {
  digest: string;
  mediaType: string;
  /** What the manifest refers to (children, config, layers). */
  references: Descriptor[];
  /** The subject's digest, when the manifest has one (sent back as OCI-Subject). */
  subject: string | undefined;
}

/**
 * Manifests of local repositories: pushed, validated against what the
 * repository holds, tagged, listed, found by their subject, and deleted.
 * Nothing here ever talks to an upstream.
 */
export class LocalManifests {
  private readonly store: ContentStore;

  constructor(store: ContentStore) {
    this.store = store;
  }

  private result(m: StoredManifest): ManifestResult {
    return { digest: m.digest, mediaType: m.mediaType, size: m.body.length, source: 'local', body: async () => m.body };
  }

  async get(route: LocalRoute, ref: Reference): Promise<ManifestResult> {
    let digest: string;
    if (ref.kind === 'digest') {
      digest = ref.digest;
    } else {
      const link = await this.store.getTag(route.repo, ref.tag);
      if (!link) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { tag: ref.tag } });
      digest = link.digest;
    }
    const m = await this.store.getManifest(route.repo, digest);
    if (!m) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { digest } });
    return this.result(m);
  }

  /** A by-digest manifest answerable from memory (tags always read storage: they move). */
  peek(route: LocalRoute, ref: Reference): StoredManifest | undefined {
    return ref.kind === 'digest' ? this.store.peekManifest(route.repo, ref.digest) : undefined;
  }

  /**
   * Stores a pushed manifest after checking it: valid JSON of a supported
   * type, the digest in the URL (if any) matching the bytes, and every blob
   * and child manifest it references present in this repository.
   */
  async put(route: LocalRoute, ref: Reference, body: Buffer, contentType: string | undefined): Promise<PushedManifest> {
    const parsed = parseManifest(body, contentType);
    if (parsed.mediaType === MediaTypes.dockerManifestV1 || parsed.mediaType === MediaTypes.dockerManifestV1Signed) {
      throw new RegistryError('MANIFEST_INVALID', { message: 'Docker schema 1 manifests are not accepted', detail: { mediaType: parsed.mediaType } });
    }
    const algorithm = ref.kind === 'digest' ? (parseDigest(ref.digest)?.algorithm ?? 'sha256') : 'sha256';
    const digest = digestOf(body, algorithm);
    if (ref.kind === 'digest' && ref.digest !== digest) {
      throw new RegistryError('DIGEST_INVALID', { message: 'manifest digest does not match its content', detail: { expected: ref.digest, actual: digest } });
    }
    for (const blob of parsed.blobs) {
      const present = (await this.store.hasLayerLink(route.repo, blob.digest)) && (await this.store.statBlob(blob.digest));
      if (!present) throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { detail: { digest: blob.digest } });
    }
    for (const child of parsed.manifests) {
      if (!(await this.store.getManifest(route.repo, child.digest))) {
        throw new RegistryError('MANIFEST_BLOB_UNKNOWN', { detail: { digest: child.digest } });
      }
    }
    await this.store.putManifest(route.repo, { digest, mediaType: parsed.mediaType, body });
    if (ref.kind === 'tag') await this.store.setTag(route.repo, ref.tag, { digest, mediaType: parsed.mediaType, size: body.length });
    if (parsed.subject) {
      const descriptor: Descriptor = { mediaType: parsed.mediaType, digest, size: body.length };
      // The spec: artifactType, else the config's media type.
      const artifactType = parsed.artifactType ?? parsed.blobs[0]?.mediaType;
      if (artifactType) descriptor.artifactType = artifactType;
      if (parsed.annotations) descriptor.annotations = parsed.annotations;
      await this.store.putReferrer(route.repo, parsed.subject.digest, descriptor);
    }
    return { digest, mediaType: parsed.mediaType, references: [...parsed.manifests, ...parsed.blobs], subject: parsed.subject?.digest };
  }

  async tags(route: LocalRoute): Promise<string[]> {
    const tags = await this.store.listTags(route.repo);
    if (tags.length === 0 && (await this.store.listManifests(route.repo)).length === 0) {
      throw new RegistryError('NAME_UNKNOWN', { detail: { name: route.name } });
    }
    return tags;
  }

  /** Manifests in the repository whose subject is `digest`, optionally of one artifact type. */
  async referrers(route: LocalRoute, digest: string, artifactType: string | undefined): Promise<Descriptor[]> {
    const all = await this.store.listReferrers(route.repo, digest);
    return artifactType === undefined ? all : all.filter((d) => d.artifactType === artifactType);
  }

  /**
   * Deletes a tag, or a manifest by digest together with the tags that point
   * at it and its entry in its subject's referrers.
   */
  async delete(route: LocalRoute, ref: Reference): Promise<void> {
    if (ref.kind === 'tag') {
      if (!(await this.store.getTag(route.repo, ref.tag))) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { tag: ref.tag } });
      await this.store.deleteTag(route.repo, ref.tag);
      return;
    }
    const m = await this.store.getManifest(route.repo, ref.digest);
    if (!m) throw new RegistryError('MANIFEST_UNKNOWN', { detail: { digest: ref.digest } });
    for (const tag of await this.store.listTags(route.repo)) {
      const link = await this.store.getTag(route.repo, tag);
      if (link?.digest === ref.digest) await this.store.deleteTag(route.repo, tag);
    }
    const subject = parseManifest(m.body, m.mediaType).subject;
    if (subject) await this.store.deleteReferrer(route.repo, subject.digest, ref.digest);
    await this.store.unlinkManifest(route.repo, ref.digest);
  }
}
