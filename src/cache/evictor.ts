import type { Logger } from 'pino';
import type { MetaStore } from '../meta/meta.ts';
import { tagMetaKey } from '../proxy/manifests.ts';
import type { ContentStore } from '../store/content-store.ts';
import type { AccessTimes } from './access-times.ts';
import { planEviction } from './eviction-plan.ts';
import { localDigests, scanCache, type CacheUnit } from './inventory.ts';

export interface EvictOptions {
  /** Keep cached bytes at or under this. */
  budgetBytes?: number | undefined;
  /** Evict what has not been used for this long. */
  maxUnusedMs?: number | undefined;
  /** The current time (ms), for tests. */
  now?: number;
  /** True while a blob is being read or written: it is then kept (and collected by a later run). */
  pinned: (digest: string) => boolean;
  /** The metadata store holding tag freshness: an evicted tag's entry is dropped so the next pull asks the upstream. */
  meta?: MetaStore;
  logger?: Logger;
}

export interface EvictResult {
  /** Units removed: images (with their tags) and loose blobs. */
  evicted: Array<{ repo: string; kind: CacheUnit['kind']; digest: string; tags: string[]; lastAccess: number }>;
  /** Blobs (manifests included) whose bytes were deleted. */
  deleted: Array<{ digest: string; size: number }>;
  /** Blobs left in place because they were in use (or became needed by local content meanwhile). */
  kept: string[];
  freedBytes: number;
  /** Cached bytes before, and after the run (counting kept blobs as still there). */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * Brings the cache within its budget and age limit. Scans the cache
 * (scanCache), decides with planEviction, then, per evicted unit: removes its
 * tag links (unless the tag moved meanwhile), then the manifest and blob
 * links no remaining unit of the repository holds, then the tags' freshness
 * entries. Last, it deletes the bytes of digests nothing refers to any more,
 * skipping pinned ones and any a local repository linked since the scan.
 * Units touched after the scan began are left alone: a pull is using them.
 */
export async function evict(store: ContentStore, accessTimes: AccessTimes | undefined, options: EvictOptions): Promise<EvictResult> {
  const started = Date.now();
  const now = options.now ?? started;
  const log = options.logger;
  const inventory = await scanCache(store, accessTimes, log);
  const byId = new Map(inventory.units.map((u) => [u.id, u]));
  const byRepo = new Map<string, CacheUnit[]>();
  for (const u of inventory.units) byRepo.set(u.repo, [...(byRepo.get(u.repo) ?? []), u]);
  const plan = planEviction({
    units: inventory.units.map((u) => ({ id: u.id, lastAccess: u.lastAccess, refs: [...u.manifests, ...u.blobs] })),
    sizes: inventory.sizes,
    local: inventory.local,
    budgetBytes: options.budgetBytes,
    maxUnusedMs: options.maxUnusedMs,
    now,
  });
  const result: EvictResult = { evicted: [], deleted: [], kept: [], freedBytes: 0, bytesBefore: plan.bytesBefore, bytesAfter: plan.bytesBefore };
  if (plan.evict.length === 0) return result;

  const remaining = new Set(inventory.units.map((u) => u.id));
  const skipped: CacheUnit[] = [];
  for (const id of plan.evict) {
    const unit = byId.get(id)!;
    if (touchedSince(unit, accessTimes, started)) {
      skipped.push(unit);
      continue;
    }
    remaining.delete(id);
    const linkedInUse = await removeUnit(store, unit, byRepo.get(unit.repo) ?? [], remaining, options);
    accessTimes?.forget(
      unit.repo,
      [...unit.manifests, ...unit.blobs].filter((d) => !linkedInUse.includes(d)),
    );
    // A loose blob left behind keeps its image's age, so the next run takes it first.
    for (const d of linkedInUse) accessTimes?.touchBlob(unit.repo, d, unit.lastAccess);
    result.evicted.push({ repo: unit.repo, kind: unit.kind, digest: unit.digest, tags: unit.tags, lastAccess: unit.lastAccess });
    log?.debug({ repo: unit.repo, digest: unit.digest, tags: unit.tags, lastAccess: new Date(unit.lastAccess).toISOString() }, 'evicted from cache');
  }

  // A digest is still needed when a unit that stayed (in use, skipped) refers to it.
  const stillNeeded = new Set<string>();
  for (const u of skipped) for (const d of [...u.manifests, ...u.blobs]) stillNeeded.add(d);
  const candidates = plan.free.filter((d) => inventory.sizes.has(d) && !stillNeeded.has(d));
  // Local repositories may have linked a candidate since the scan (a cross-repository mount).
  const localNow = candidates.length > 0 ? await localDigests(store, (await store.listRepositories({ withLayers: true })).filter((r) => r.startsWith('local/'))) : new Set<string>();
  for (const digest of candidates) {
    const size = inventory.sizes.get(digest)!;
    if (options.pinned(digest) || localNow.has(digest)) {
      result.kept.push(digest);
      continue;
    }
    await store.deleteBlob(digest);
    result.deleted.push({ digest, size });
    result.freedBytes += size;
  }
  result.bytesAfter = plan.bytesBefore - result.freedBytes;
  log?.info(
    {
      evicted: result.evicted.length,
      deleted: result.deleted.length,
      kept: result.kept.length,
      inUse: skipped.length,
      freedBytes: result.freedBytes,
      cachedBytes: result.bytesAfter,
      budgetBytes: options.budgetBytes,
      ms: Date.now() - started,
    },
    'cache eviction done',
  );
  return result;
}

function touchedSince(unit: CacheUnit, accessTimes: AccessTimes | undefined, since: number): boolean {
  if (!accessTimes) return false;
  if (unit.kind === 'blob') return (accessTimes.blobAccess(unit.repo, unit.digest) ?? 0) >= since;
  return unit.manifests.some((d) => (accessTimes.manifestAccess(unit.repo, d) ?? 0) >= since);
}

/**
 * Removes a unit's tags and the links of its repository (`repoUnits`) that
 * no remaining unit there holds; returns the blobs whose links stayed because
 * they were in use.
 */
async function removeUnit(
  store: ContentStore,
  unit: CacheUnit,
  repoUnits: readonly CacheUnit[],
  remaining: ReadonlySet<string>,
  { pinned, meta }: Pick<EvictOptions, 'pinned' | 'meta'>,
): Promise<string[]> {
  const heldManifests = new Set<string>();
  const heldBlobs = new Set<string>();
  for (const u of repoUnits) {
    if (!remaining.has(u.id)) continue;
    for (const d of u.manifests) heldManifests.add(d);
    for (const d of u.blobs) heldBlobs.add(d);
  }
  const removedTags: string[] = [];
  for (const tag of unit.tags) {
    const link = await store.getTag(unit.repo, tag);
    // The tag moved to another manifest since the scan: it is no longer this unit's.
    if (link && link.digest !== unit.digest) continue;
    await store.deleteTag(unit.repo, tag);
    removedTags.push(tag);
  }
  for (const d of unit.manifests) if (!heldManifests.has(d)) await store.unlinkManifest(unit.repo, d);
  // A blob in use keeps its link: the next run finds it as a loose blob and collects it then.
  const linkedInUse: string[] = [];
  for (const d of unit.blobs) {
    if (heldBlobs.has(d)) continue;
    if (pinned(d)) linkedInUse.push(d);
    else await store.unlinkLayer(unit.repo, d);
  }
  // After the links: a freshness entry set meanwhile by a revalidation is dropped too.
  for (const tag of removedTags) await meta?.delete(tagMetaKey(unit, tag));
  return linkedInUse;
}
