import type { Logger } from 'pino';
import type { ContentStore } from '../store/content-store.ts';

/** What is stored per cached repository, at `repos/<repo>/_access`. */
export interface AccessRecord {
  v: 1;
  /** Manifest digest → last access, epoch ms. */
  manifests: Record<string, number>;
  /** Blob digest → last access, epoch ms. */
  layers: Record<string, number>;
}

interface RepoTimes {
  manifests: Map<string, number>;
  layers: Map<string, number>;
  /** Digests evicted since the last flush: dropped from the stored record too. */
  forgotten: Set<string>;
}

export interface AccessTimesOptions {
  store: ContentStore;
  logger?: Logger;
  now?: () => number;
}

const cachePrefix = 'cache/';

/**
 * Last access times of cached content, per repository: of each manifest
 * (a pull reads it first, so it stands for its image) and each blob. A
 * touch is a Map write; the dirty repositories are written to storage on
 * flush() (every 30 s by start(), and at close()), each merged with what is
 * stored so that replicas and restarts keep the latest time seen anywhere.
 */
export class AccessTimes {
  private readonly store: ContentStore;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly repos = new Map<string, RepoTimes>();
  private readonly dirty = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;

  constructor(options: AccessTimesOptions) {
    this.store = options.store;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  private times(repo: string): RepoTimes {
    let r = this.repos.get(repo);
    if (!r) {
      r = { manifests: new Map(), layers: new Map(), forgotten: new Set() };
      this.repos.set(repo, r);
    }
    return r;
  }

  /** Records a read of a manifest of a cached repository (`cache/<upstream>/<name>`). */
  touchManifest(repo: string, digest: string, at = this.now()): void {
    const r = this.times(repo);
    r.manifests.set(digest, at);
    if (r.forgotten.size > 0) r.forgotten.delete(digest);
    this.dirty.add(repo);
  }

  /** Records a read of a blob through a cached repository. */
  touchBlob(repo: string, digest: string, at = this.now()): void {
    const r = this.times(repo);
    r.layers.set(digest, at);
    if (r.forgotten.size > 0) r.forgotten.delete(digest);
    this.dirty.add(repo);
  }

  manifestAccess(repo: string, digest: string): number | undefined {
    return this.repos.get(repo)?.manifests.get(digest);
  }

  blobAccess(repo: string, digest: string): number | undefined {
    return this.repos.get(repo)?.layers.get(digest);
  }

  /** The latest access of anything in the repository, or undefined. */
  repoAccess(repo: string): number | undefined {
    const r = this.repos.get(repo);
    if (!r) return undefined;
    let latest: number | undefined;
    for (const t of r.manifests.values()) if (latest === undefined || t > latest) latest = t;
    for (const t of r.layers.values()) if (latest === undefined || t > latest) latest = t;
    return latest;
  }

  /** Drops the times of evicted manifests and blobs of a repository (here and, at the next flush, in storage). */
  forget(repo: string, digests: Iterable<string>): void {
    const r = this.times(repo);
    for (const d of digests) {
      r.manifests.delete(d);
      r.layers.delete(d);
      r.forgotten.add(d);
    }
    this.dirty.add(repo);
  }

  /** Reads the stored records of every cached repository (merging with anything touched meanwhile). */
  async load(): Promise<void> {
    for (const repo of await this.store.listRepositories({ withLayers: true })) {
      if (!repo.startsWith(cachePrefix)) continue;
      const stored = await this.read(repo);
      if (stored) this.merge(this.times(repo), stored);
    }
  }

  /** Writes the dirty repositories' records; one flush at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.flushDirty().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  /** Flushes every `intervalMs` (default 30 s) until close(). */
  start(intervalMs = 30_000): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      this.flush().catch((err: unknown) => this.logger?.warn({ err }, 'access times flush failed'));
    }, intervalMs);
    this.timer.unref();
  }

  /** Stops the periodic flush and writes what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.flushing?.catch(() => undefined);
    await this.flush();
  }

  private async flushDirty(): Promise<void> {
    const repos = [...this.dirty];
    this.dirty.clear();
    for (const repo of repos) {
      const r = this.repos.get(repo);
      if (!r) continue;
      try {
        const stored = await this.read(repo);
        if (stored) this.merge(r, stored);
        for (const d of r.forgotten) {
          r.manifests.delete(d);
          r.layers.delete(d);
        }
        r.forgotten.clear();
        if (r.manifests.size === 0 && r.layers.size === 0) {
          await this.store.deleteAccessRecord(repo);
          continue;
        }
        const record: AccessRecord = { v: 1, manifests: Object.fromEntries(r.manifests), layers: Object.fromEntries(r.layers) };
        await this.store.putAccessRecord(repo, JSON.stringify(record));
      } catch (err) {
        this.dirty.add(repo);
        throw err;
      }
    }
  }

  private merge(into: RepoTimes, stored: AccessRecord): void {
    for (const [d, t] of Object.entries(stored.manifests)) {
      if (!into.forgotten.has(d) && t > (into.manifests.get(d) ?? -Infinity)) into.manifests.set(d, t);
    }
    for (const [d, t] of Object.entries(stored.layers)) {
      if (!into.forgotten.has(d) && t > (into.layers.get(d) ?? -Infinity)) into.layers.set(d, t);
    }
  }

  private async read(repo: string): Promise<AccessRecord | undefined> {
    const body = await this.store.getAccessRecord(repo);
    if (!body) return undefined;
    try {
      return parseAccessRecord(JSON.parse(body.toString('utf8')));
    } catch (err) {
      this.logger?.warn({ repo, err }, 'access record unreadable; starting it afresh');
      return undefined;
    }
  }
}

/** Validates a stored record; throws on anything else. */
export function parseAccessRecord(value: unknown): AccessRecord {
  const v = value as Partial<AccessRecord> | null;
  if (typeof v !== 'object' || v === null || v.v !== 1) throw new Error('not an access record');
  const times = (o: unknown): Record<string, number> => {
    if (typeof o !== 'object' || o === null) return {};
    return Object.fromEntries(Object.entries(o).filter((e): e is [string, number] => typeof e[1] === 'number' && Number.isFinite(e[1])));
  };
  return { v: 1, manifests: times(v.manifests), layers: times(v.layers) };
}
