import type { Reference } from '../registry/names.ts';
import type { UpstreamRoute } from '../routing.ts';
import type { StoredManifest } from '../store/content-store.ts';
import { ProxyBlobs, type BlobBody, type ProxyBlobsOptions, type RangeChooser } from '../proxy/blobs.ts';
import { ProxyManifests, type ManifestResult, type ProxyManifestsOptions } from '../proxy/manifests.ts';
import type { AccessTimes } from './access-times.ts';
import { releasedWith, type Pins } from './pins.ts';

/**
 * The pull-through manifest service, recording each manifest served (by tag
 * or digest, fast path included) in the access times eviction orders by.
 */
export class TrackedProxyManifests extends ProxyManifests {
  private readonly accessTimes: AccessTimes;

  constructor(options: ProxyManifestsOptions & { accessTimes: AccessTimes }) {
    super(options);
    this.accessTimes = options.accessTimes;
  }

  override async peek(route: UpstreamRoute, ref: Reference): Promise<StoredManifest | undefined> {
    const hit = await super.peek(route, ref);
    if (hit) this.accessTimes.touchManifest(route.repo, hit.digest);
    return hit;
  }

  override peekSync(route: UpstreamRoute, ref: Reference): StoredManifest | undefined {
    const hit = super.peekSync(route, ref);
    if (hit) this.accessTimes.touchManifest(route.repo, hit.digest);
    return hit;
  }

  override async get(route: UpstreamRoute, ref: Reference): Promise<ManifestResult> {
    const result = await super.get(route, ref);
    this.accessTimes.touchManifest(route.repo, result.digest);
    return result;
  }
}

/**
 * The pull-through blob service, recording each blob read and pinning its
 * digest from the lookup until the response has its bytes (handle closed or
 * stream done), so eviction never deletes a blob while it is being served.
 */
export class TrackedProxyBlobs extends ProxyBlobs {
  private readonly accessTimes: AccessTimes;
  private readonly pins: Pins;

  constructor(options: ProxyBlobsOptions & { accessTimes: AccessTimes; pins: Pins }) {
    super(options);
    this.accessTimes = options.accessTimes;
    this.pins = options.pins;
  }

  override async open(route: UpstreamRoute, digest: string, choose?: RangeChooser): Promise<BlobBody> {
    const release = this.pins.pin(digest);
    try {
      const body = await super.open(route, digest, choose);
      this.accessTimes.touchBlob(route.repo, digest);
      return releasedWith(body, release);
    } catch (err) {
      release();
      throw err;
    }
  }
}
