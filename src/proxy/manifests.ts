import type { Logger } from 'pino';
import { digestOf } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import type { Descriptor } from '../registry/manifest.ts';
import type { Reference } from '../registry/names.ts';
import type { MetaStore } from '../meta/meta.ts';
import type { ContentStore, StoredManifest } from '../store/content-store.ts';
import { UpstreamError, type Upstream } from '../upstream/types.ts';
import type { UpstreamRoute } from '../routing.ts';
import { confirmed, isFresh, staleRetryLater, type TagState } from './freshness.ts';
import { SingleFlight } from './single-flight.ts';
import { toRegistryError } from './upstream-errors.ts';

/** How a manifest response was produced. */
export type ManifestSource = 'cache' | 'revalidated' | 'upstream' | 'stale' | 'local';

export interface ManifestResult {
  digest: string;
  mediaType: string;
  size: number;
  source: ManifestSource;
  /** Loads the bytes (from the in-process cache when possible). */
  body(): Promise<Buffer>;
}

export interface ProxyManifestsOptions {
  store: ContentStore;
  meta: MetaStore;
  upstreams: ReadonlyMap<string, Upstream>;
  /** Tag freshness per upstream key, in ms. */
  tagTtl: (upstream: string) => number;
  logger: Logger;
  now?: () => number;
  /**
   * True while an upstream's remaining pull quota is low (cache/quota.ts):
   * its cached tags are then served without revalidation.
   */
  quotaGuard?: (upstream: string) => boolean;
}

/**
 * The pull-through manifest service. Digests are immutable: once cached they
 * never go upstream again. Tags are served from cache while fresh, then
 * revalidated with a HEAD, re-fetched only when the digest moved, and served
 * stale when the upstream is down or rate limiting.
 */
export class ProxyManifests {
  private readonly o: ProxyManifestsOptions;
  private readonly now: () => number;
  private readonly tagFlights = new SingleFlight<ManifestResult>();
  private readonly digestFlights = new SingleFlight<StoredManifest>();

  constructor(options: ProxyManifestsOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
  }

  private upstream(route: UpstreamRoute): Upstream {
    const up = this.o.upstreams.get(route.upstream);
    if (!up) throw new RegistryError('NAME_UNKNOWN', { detail: { upstream: route.upstream } });
    return up;
  }

  /**
   * A manifest answerable from memory alone: a digest, or a fresh tag, whose
   * bytes are in the in-process cache. Undefined means "ask get()". This is
   * the hot path of warm pulls: no upstream, no disk.
   */
  async peek(route: UpstreamRoute, ref: Reference): Promise<StoredManifest | undefined> {
    if (ref.kind === 'digest') return this.o.store.peekManifest(route.repo, ref.digest);
    return this.ifFresh(route, await this.o.meta.get<TagState>(tagMetaKey(route, ref.tag)));
  }

  /**
   * peek() without waiting: from the in-process caches and an in-process
   * metadata store only (with Redis, tag requests are undefined here and
   * take the asynchronous way).
   */
  peekSync(route: UpstreamRoute, ref: Reference): StoredManifest | undefined {
    if (ref.kind === 'digest') return this.o.store.peekManifest(route.repo, ref.digest);
    return this.ifFresh(route, this.o.meta.peek?.<TagState>(tagMetaKey(route, ref.tag)));
  }

  /** The manifest a tag state points at, from memory, while the state is fresh. */
  private ifFresh(route: UpstreamRoute, state: Readonly<TagState> | undefined): StoredManifest | undefined {
    return state && isFresh(state, this.now()) ? this.o.store.peekManifest(route.repo, state.digest) : undefined;
  }

  /** True when peekSync() can answer tag requests (the metadata store is in-process). */
  get tagsPeekSync(): boolean {
    return this.o.meta.peek !== undefined;
  }

  async get(route: UpstreamRoute, ref: Reference): Promise<ManifestResult> {
    if (ref.kind === 'digest') return this.byDigest(route, ref.digest);
    const state = await this.o.meta.get<TagState>(tagMetaKey(route, ref.tag));
    if (state && isFresh(state, this.now())) {
      const hit = this.fromStore(route, state, 'cache');
      if (hit) return hit;
    }
    return this.tagFlights.run(`${route.repo}:${ref.tag}`, () => this.revalidate(route, ref.tag, state));
  }

  private fromStore(route: UpstreamRoute, t: Pick<TagState, 'digest' | 'mediaType' | 'size'>, source: ManifestSource): ManifestResult {
    const store = this.o.store;
    return {
      digest: t.digest,
      mediaType: t.mediaType,
      size: t.size,
      source,
      body: async () => {
        const m = await store.getManifest(route.repo, t.digest);
        // Evicted since the tag was looked up: digests are immutable, so fetch it again by digest.
        return m ? m.body : (await this.byDigest(route, t.digest)).body();
      },
    };
  }

  private result(m: StoredManifest, source: ManifestSource): ManifestResult {
    return { digest: m.digest, mediaType: m.mediaType, size: m.body.length, source, body: async () => m.body };
  }

  private async byDigest(route: UpstreamRoute, digest: string): Promise<ManifestResult> {
    const cached = await this.o.store.getManifest(route.repo, digest);
    if (cached) return this.result(cached, 'cache');
    const m = await this.digestFlights.run(`${route.repo}@${digest}`, async () => {
      try {
        const got = await this.upstream(route).getManifest(route.name, digest);
        const stored = { digest, mediaType: got.mediaType, body: got.body };
        if (digestOf(got.body, digest.startsWith('sha512:') ? 'sha512' : 'sha256') !== digest) {
          throw new UpstreamError('INVALID', route.upstream, `manifest ${digest} arrived with other content`);
        }
        await this.o.store.putManifest(route.repo, stored);
        return stored;
      } catch (err) {
        throw toRegistryError(err, 'MANIFEST_UNKNOWN');
      }
    });
    return this.result(m, 'upstream');
  }

  /** Asks the upstream about a tag that is stale or unknown (one flight per repo:tag). */
  private async revalidate(route: UpstreamRoute, tag: string, known: TagState | undefined): Promise<ManifestResult> {
    const now = this.now();
    const ttl = this.o.tagTtl(route.upstream);
    const key = tagMetaKey(route, tag);
    const log = this.o.logger.child({ upstream: route.upstream, repository: route.name, tag });
    // After a restart the in-process metadata is empty: the tag link in storage is the stale copy.
    let current: TagState | undefined = known;
    if (!current) {
      const link = await this.o.store.getTag(route.repo, tag);
      if (link) current = { ...link, checkedAt: 0, freshUntil: 0 };
    }
    if (current && this.o.quotaGuard?.(route.upstream) && (await this.o.store.getManifest(route.repo, current.digest))) {
      log.debug({ digest: current.digest }, 'upstream pull quota low; serving cached tag without revalidation');
      await this.o.meta.set(key, staleRetryLater(current, now, ttl));
      return this.fromStore(route, current, 'stale');
    }
    const up = this.upstream(route);
    try {
      if (current) {
        const head = await up.headManifest(route.name, tag);
        if (head.digest === current.digest && (await this.o.store.getManifest(route.repo, current.digest))) {
          await this.o.meta.set(key, confirmed(current, now, ttl));
          return this.fromStore(route, current, 'revalidated');
        }
      }
      const got = await up.getManifest(route.name, tag);
      const digest = digestOf(got.body);
      if (got.digest && got.digest !== digest && got.digest.startsWith('sha256:')) {
        throw new UpstreamError('INVALID', route.upstream, `manifest for ${tag} does not match its Docker-Content-Digest`);
      }
      const stored = { digest: got.digest?.startsWith('sha512:') ? got.digest : digest, mediaType: got.mediaType, body: got.body };
      await this.o.store.putManifest(route.repo, stored);
      const target = { digest: stored.digest, mediaType: stored.mediaType, size: stored.body.length };
      await this.o.store.setTag(route.repo, tag, target);
      await this.o.meta.set(key, confirmed(target, now, ttl));
      if (current && current.digest !== stored.digest) log.info({ from: current.digest, to: stored.digest }, 'tag moved upstream');
      return this.result(stored, 'upstream');
    } catch (err) {
      if (current && err instanceof UpstreamError && err.allowsStale) {
        const stale = this.fromStore(route, current, 'stale');
        log.warn({ code: err.code, status: err.status, digest: current.digest }, 'upstream unavailable; serving stale tag');
        await this.o.meta.set(key, staleRetryLater(current, now, ttl));
        return stale;
      }
      if (err instanceof UpstreamError && err.code === 'NOT_FOUND' && current) {
        log.info('tag no longer exists upstream');
        await this.o.meta.delete(key);
        await this.o.store.deleteTag(route.repo, tag);
      }
      throw toRegistryError(err, 'MANIFEST_UNKNOWN');
    }
  }

  /**
   * Referrers of a proxied manifest, from the upstream's referrers API where
   * it has one; an empty list where it has none (Distribution 2.8) or is down.
   */
  async referrers(route: UpstreamRoute, digest: string, artifactType: string | undefined): Promise<Descriptor[]> {
    const up = this.upstream(route);
    let found: Descriptor[] | undefined;
    try {
      found = await up.referrers?.(route.name, digest);
    } catch (err) {
      if (!(err instanceof UpstreamError) || !err.allowsStale) throw toRegistryError(err, 'MANIFEST_UNKNOWN');
      this.o.logger.warn({ upstream: route.upstream, code: err.code }, 'referrers unavailable upstream; answering none');
    }
    const all = found ?? [];
    return artifactType === undefined ? all : all.filter((d) => d.artifactType === artifactType);
  }

  /** Tags of a proxied repository: the upstream's list, cached; the locally known tags when it is down. */
  async tags(route: UpstreamRoute, ttlMs: number): Promise<string[]> {
    const key = `tags:${route.repo}`;
    const cached = await this.o.meta.get<string[]>(key);
    if (cached) return cached;
    try {
      const tags = await this.upstream(route).listTags(route.name);
      await this.o.meta.set(key, tags, ttlMs);
      return tags;
    } catch (err) {
      if (err instanceof UpstreamError && err.allowsStale) {
        const local = await this.o.store.listTags(route.repo);
        if (local.length > 0) return local;
      }
      throw toRegistryError(err, 'NAME_UNKNOWN');
    }
  }
}

/** Where a cached tag's freshness (TagState) is kept in the metadata store; eviction drops it with the tag. */
export function tagMetaKey(route: Pick<UpstreamRoute, 'repo'>, tag: string): string {
  return `tag:${route.repo}:${tag}`;
}
