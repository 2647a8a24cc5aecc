import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import type { BlobBody, RangeChooser } from '../proxy/blobs.ts';
import type { LocalRoute, Route } from '../routing.ts';
import type { ContentStore } from '../store/content-store.ts';

/** Blobs of local repositories: served from the store when linked into the repository. */
export class LocalBlobs {
  private readonly store: ContentStore;

  constructor(store: ContentStore) {
    this.store = store;
  }

  async stat(route: LocalRoute, digest: string): Promise<{ size: number; source: 'local' }> {
    requireDigest(digest);
    const info = (await this.store.hasLayerLink(route.repo, digest)) ? await this.store.statBlob(digest) : undefined;
    if (!info) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    return { size: info.size, source: 'local' };
  }

  async open(route: LocalRoute, digest: string, choose?: RangeChooser): Promise<BlobBody> {
    requireDigest(digest);
    if (!(await this.store.hasLayerLink(route.repo, digest))) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    if (this.store.offersHandles) {
      const handle = await this.store.openBlobHandle(digest);
      if (!handle) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
      try {
        return { size: handle.size, range: choose?.(handle.size), source: 'local', bytes: { kind: 'handle', handle } };
      } catch (err) {
        await handle.close();
        throw err;
      }
    }
    const info = await this.store.statBlob(digest);
    if (!info) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    const range = choose?.(info.size);
    const stream = await this.store.openBlob(digest, range);
    if (!stream) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    return { size: info.size, range, source: 'local', bytes: { kind: 'stream', stream } };
  }

  /**
   * Cross-repository mount: links a blob that `from` holds (a local
   * repository, or cached content of an upstream) into `to` without a
   * transfer. False when `from` does not hold it.
   */
  async mount(to: LocalRoute, digest: string, from: Route): Promise<boolean> {
    requireDigest(digest);
    if (!(await this.store.hasLayerLink(from.repo, digest)) || !(await this.store.statBlob(digest))) return false;
    await this.store.linkLayer(to.repo, digest);
    return true;
  }

  async delete(route: LocalRoute, digest: string): Promise<void> {
    requireDigest(digest);
    if (!(await this.store.hasLayerLink(route.repo, digest))) throw new RegistryError('BLOB_UNKNOWN', { detail: { digest } });
    await this.store.unlinkLayer(route.repo, digest);
  }
}
