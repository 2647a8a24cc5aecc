import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { ByteRange, ObjectHandle, ObjectInfo, StorageDriver } from '../storage/driver.ts';
import type { Descriptor } from '../registry/manifest.ts';
import { parseDigest } from '../registry/digest.ts';
import {
  blobKey,
  blobsPrefix,
  layerLinkKey,
  layersPrefix,
  manifestLinkKey,
  manifestsPrefix,
  referrerKey,
  referrersPrefix,
  repoKey,
  tagKey,
  tagsPrefix,
} from './layout.ts';

/** A tag's target as stored. */
export interface TagLink {
  digest: string;
  mediaType: string;
  size: number;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
}

/**
 * The content-addressed store on top of a storage driver: blobs by digest,
 * manifests, tag links and per-repository links. It knows the layout
 * (store/layout.ts); the driver only knows keys and bytes.
 *
 * Manifest bodies and link existence are kept in small in-process caches:
 * both are immutable once written (a digest names exactly one content), so
 * the caches never need invalidating except on delete.
 */
export class ContentStore {
  readonly driver: StorageDriver;
  private readonly manifests: LRUCache<string, StoredManifest>;
  private readonly links = new LRUCache<string, true>({ max: 200_000 });

  constructor(driver: StorageDriver, options: { manifestCacheBytes?: number } = {}) {
    this.driver = driver;
    this.manifests = new LRUCache<string, StoredManifest>({
      maxSize: options.manifestCacheBytes ?? 64 * 1024 * 1024,
      sizeCalculation: (m) => m.body.length + 64,
    });
  }

  statBlob(digest: string): Promise<ObjectInfo | undefined> {
    return this.driver.stat(blobKey(digest));
  }

  openBlob(digest: string, range?: ByteRange): Promise<Readable | undefined> {
    return this.driver.reader(blobKey(digest), range);
  }

  /** Opens a blob for positional reads, where the driver offers it (undefined when missing or not offered). */
  async openBlobHandle(digest: string): Promise<ObjectHandle | undefined> {
    return this.driver.openHandle?.(blobKey(digest));
  }

  get offersHandles(): boolean {
    return this.driver.openHandle !== undefined;
  }

  /** Commits a verified local file as the blob with this digest (the file is consumed). */
  async commitBlobFile(digest: string, localPath: string): Promise<void> {
    await this.driver.putFile(blobKey(digest), localPath);
  }

  async hasLayerLink(repo: string, digest: string): Promise<boolean> {
    const key = layerLinkKey(repo, digest);
    if (this.links.has(key)) return true;
    const found = (await this.driver.stat(key)) !== undefined;
    if (found) this.links.set(key, true);
    return found;
  }

  async linkLayer(repo: string, digest: string): Promise<void> {
    const key = layerLinkKey(repo, digest);
    if (this.links.has(key)) return;
    await this.driver.put(key, digest);
    this.links.set(key, true);
  }

  /** Stores manifest bytes by digest and links them into the repository (content first, then the link). */
  async putManifest(repo: string, manifest: StoredManifest): Promise<void> {
    const key = blobKey(manifest.digest);
    if ((await this.driver.stat(key)) === undefined) await this.driver.put(key, manifest.body);
    const link = manifestLinkKey(repo, manifest.digest);
    await this.driver.put(link, JSON.stringify({ mediaType: manifest.mediaType }));
    this.links.set(link, true);
    this.manifests.set(manifest.digest, manifest);
  }

  /** A manifest linked into the repository, or undefined. */
  async getManifest(repo: string, digest: string): Promise<StoredManifest | undefined> {
    const link = manifestLinkKey(repo, digest);
    const cached = this.manifests.get(digest);
    if (cached && this.links.has(link)) return cached;
    const linkBody = await this.driver.get(link);
    if (!linkBody) return undefined;
    this.links.set(link, true);
    if (cached) return cached;
    const body = await this.driver.get(blobKey(digest));
    if (!body) return undefined;
    const { mediaType } = JSON.parse(linkBody.toString('utf8')) as { mediaType: string };
    const manifest = { digest, mediaType, body };
    this.manifests.set(digest, manifest);
    return manifest;
  }

  /** A manifest linked into the repository, from the in-process caches only (no I/O), or undefined. */
  peekManifest(repo: string, digest: string): StoredManifest | undefined {
    const cached = this.manifests.get(digest);
    return cached && this.links.has(manifestLinkKey(repo, digest)) ? cached : undefined;
  }

  /** Removes a manifest from a repository (its bytes stay until garbage collection). */
  async unlinkManifest(repo: string, digest: string): Promise<void> {
    const link = manifestLinkKey(repo, digest);
    this.links.delete(link);
    await this.driver.delete(link);
  }

  /** Removes a blob from a repository (its bytes stay until garbage collection). */
  async unlinkLayer(repo: string, digest: string): Promise<void> {
    const link = layerLinkKey(repo, digest);
    this.links.delete(link);
    await this.driver.delete(link);
  }

  /** Records that `descriptor` (a manifest in the repository) refers to `subject`. */
  async putReferrer(repo: string, subject: string, descriptor: Descriptor): Promise<void> {
    await this.driver.put(referrerKey(repo, subject, descriptor.digest), JSON.stringify(descriptor));
  }

  async deleteReferrer(repo: string, subject: string, digest: string): Promise<void> {
    await this.driver.delete(referrerKey(repo, subject, digest));
  }

  /** Descriptors of the manifests in the repository whose subject is `subject`. */
  async listReferrers(repo: string, subject: string): Promise<Descriptor[]> {
    const prefix = referrersPrefix(repo, subject);
    const names = await this.driver.list(prefix);
    const found: Descriptor[] = [];
    for (const name of names) {
      const body = await this.driver.get(`${prefix}/${name}`);
      if (body) found.push(JSON.parse(body.toString('utf8')) as Descriptor);
    }
    return found;
  }

  /** Every manifest digest linked into the repository. */
  async listManifests(repo: string): Promise<string[]> {
    const prefix = manifestsPrefix(repo);
    const digests: string[] = [];
    for (const algorithm of await this.driver.list(prefix)) {
      for (const hex of await this.driver.list(`${prefix}/${algorithm}`)) digests.push(`${algorithm}:${hex}`);
    }
    return digests;
  }

  /**
   * Every repository key holding manifests (`local/<name>`, `cache/<upstream>/<name>`),
   * found by walking the repository folders. With `withLayers`, also those
   * holding only blob links (a cached repository whose manifests were never pulled).
   */
  async listRepositories(options: { withLayers?: boolean } = {}): Promise<string[]> {
    const found: string[] = [];
    const walk = async (prefix: string): Promise<void> => {
      const children = await this.driver.list(prefix);
      if (children.includes('_manifests') || (options.withLayers && children.includes('_layers'))) {
        found.push(prefix.slice('repos/'.length));
      }
      for (const child of children) if (!child.startsWith('_')) await walk(`${prefix}/${child}`);
    };
    for (const top of await this.driver.list('repos')) await walk(`repos/${top}`);
    return found.sort();
  }

  /** Every blob digest linked into the repository (its `_layers`). */
  async listLayers(repo: string): Promise<string[]> {
    const prefix = layersPrefix(repo);
    const digests: string[] = [];
    for (const algorithm of await this.driver.list(prefix)) {
      for (const hex of await this.driver.list(`${prefix}/${algorithm}`)) digests.push(`${algorithm}:${hex}`);
    }
    return digests;
  }

  /** Every blob in storage (layers, configs and manifests alike), with its size and modification time. */
  async *listBlobs(): AsyncGenerator<{ digest: string; size: number; modified: Date }> {
    for (const algorithm of await this.driver.list(blobsPrefix)) {
      for (const shard of await this.driver.list(`${blobsPrefix}/${algorithm}`)) {
        for (const hex of await this.driver.list(`${blobsPrefix}/${algorithm}/${shard}`)) {
          const digest = `${algorithm}:${hex}`;
          if (!parseDigest(digest) || !hex.startsWith(shard)) continue;
          const info = await this.driver.stat(blobKey(digest));
          if (info) yield { digest, size: info.size, modified: info.modified };
        }
      }
    }
  }

  /** A whole blob's bytes (for small blobs such as manifests), or undefined. */
  getBlob(digest: string): Promise<Buffer | undefined> {
    return this.driver.get(blobKey(digest));
  }

  /** Deletes a blob's bytes from storage (garbage collection; repository links are left alone). */
  async deleteBlob(digest: string): Promise<void> {
    this.manifests.delete(digest);
    await this.driver.delete(blobKey(digest));
  }

  /** When the manifest was linked into the repository (its link's modification time), or undefined. */
  statManifestLink(repo: string, digest: string): Promise<ObjectInfo | undefined> {
    return this.driver.stat(manifestLinkKey(repo, digest));
  }

  /** When the blob was linked into the repository, or undefined. */
  statLayerLink(repo: string, digest: string): Promise<ObjectInfo | undefined> {
    return this.driver.stat(layerLinkKey(repo, digest));
  }

  /** The repository's access record (`<repo>/_access`, kept by cache/access-times.ts), or undefined. */
  getAccessRecord(repo: string): Promise<Buffer | undefined> {
    return this.driver.get(accessRecordKey(repo));
  }

  async putAccessRecord(repo: string, body: string): Promise<void> {
    await this.driver.put(accessRecordKey(repo), body);
  }

  async deleteAccessRecord(repo: string): Promise<void> {
    await this.driver.delete(accessRecordKey(repo));
  }

  async getTag(repo: string, tag: string): Promise<TagLink | undefined> {
    const body = await this.driver.get(tagKey(repo, tag));
    return body ? (JSON.parse(body.toString('utf8')) as TagLink) : undefined;
  }

  async setTag(repo: string, tag: string, link: TagLink): Promise<void> {
    await this.driver.put(tagKey(repo, tag), JSON.stringify(link));
  }

  async deleteTag(repo: string, tag: string): Promise<void> {
    await this.driver.delete(tagKey(repo, tag));
  }

  listTags(repo: string): Promise<string[]> {
    return this.driver.list(tagsPrefix(repo));
  }
}

/** `repos/<repo>/_access`: last access times of the repository's manifests and blobs (cached repositories only). */
function accessRecordKey(repo: string): string {
  return `${repoKey(repo)}/_access`;
}
