import type { Logger } from 'pino';
import { parseManifest } from '../registry/manifest.ts';
import type { ContentStore } from '../store/content-store.ts';
import type { AccessTimes } from './access-times.ts';

/**
 * One evictable piece of a cached repository: an image (a root manifest —
 * tagged, or linked and no child of another linked manifest — with its
 * linked children, their configs and layers, and the tags naming it), or a
 * blob linked into the repository that no manifest there refers to.
 */
export interface CacheUnit {
  /** `<repo>@<digest>`: unique across the cache. */
  id: string;
  /** The store's repository key, `cache/<upstream>/<name>`. */
  repo: string;
  kind: 'image' | 'blob';
  /** The root manifest's digest, or the blob's. */
  digest: string;
  /** Tags pointing at the root. */
  tags: string[];
  /** Linked manifests the unit holds (root and linked children). */
  manifests: string[];
  /** Configs and layers the manifests refer to (for a blob unit, the blob). */
  blobs: string[];
  /** Latest access recorded, else when it was cached (epoch ms). */
  lastAccess: number;
}

export interface CacheInventory {
  units: CacheUnit[];
  /** Size of every stored blob a unit refers to (manifests included); absent when not stored. */
  sizes: Map<string, number>;
  /** Digests local repositories refer to or link: never evicted. */
  local: Set<string>;
  /** Repository keys scanned. */
  cachedRepos: string[];
  localRepos: string[];
}

const cachePrefix = 'cache/';
const localPrefix = 'local/';

/**
 * Reads what the cache holds: every cached repository's images and loose
 * blobs with their sizes and last access, and the set of digests local
 * content needs. Read-only.
 */
export async function scanCache(store: ContentStore, accessTimes: AccessTimes | undefined, logger?: Logger): Promise<CacheInventory> {
  const repos = await store.listRepositories({ withLayers: true });
  const cachedRepos = repos.filter((r) => r.startsWith(cachePrefix));
  const localRepos = repos.filter((r) => r.startsWith(localPrefix));
  const units: CacheUnit[] = [];
  const sizes = new Map<string, number>();
  for (const repo of cachedRepos) units.push(...(await scanRepo(store, repo, accessTimes, logger)));
  for (const unit of units) {
    for (const d of [...unit.manifests, ...unit.blobs]) {
      if (sizes.has(d)) continue;
      const info = await store.statBlob(d);
      if (info) sizes.set(d, info.size);
    }
  }
  return { units, sizes, local: await localDigests(store, localRepos, logger), cachedRepos, localRepos };
}

interface ManifestNode {
  children: string[];
  blobs: string[];
}

async function scanRepo(store: ContentStore, repo: string, accessTimes: AccessTimes | undefined, logger?: Logger): Promise<CacheUnit[]> {
  const nodes = new Map<string, ManifestNode>();
  for (const digest of await store.listManifests(repo)) {
    // Read past the store's manifest cache, which is for serving: a scan would flush it.
    const body = await store.getBlob(digest);
    if (!body) continue;
    try {
      const parsed = parseManifest(body, undefined);
      nodes.set(digest, { children: parsed.manifests.map((c) => c.digest), blobs: parsed.blobs.map((b) => b.digest) });
    } catch (err) {
      // Upstream bytes tender cannot read: the manifest is still a unit; its blobs stay as loose blobs.
      logger?.debug({ repo, digest, err }, 'cached manifest not understood');
      nodes.set(digest, { children: [], blobs: [] });
    }
  }
  const tagsOf = new Map<string, string[]>();
  for (const tag of await store.listTags(repo)) {
    const link = await store.getTag(repo, tag);
    if (!link) continue;
    tagsOf.set(link.digest, [...(tagsOf.get(link.digest) ?? []), tag]);
  }
  const childOfSomething = new Set<string>();
  for (const node of nodes.values()) for (const c of node.children) if (nodes.has(c)) childOfSomething.add(c);
  const roots = new Set<string>();
  for (const d of nodes.keys()) if (!childOfSomething.has(d) || tagsOf.has(d)) roots.add(d);
  // A tag whose manifest is not linked still names an image (its link is removed with it).
  for (const d of tagsOf.keys()) roots.add(d);

  const units: CacheUnit[] = [];
  const covered = new Set<string>();
  for (const root of [...roots].sort()) {
    const manifests: string[] = [];
    const blobs = new Set<string>();
    const visit = (d: string): void => {
      if (manifests.includes(d)) return;
      const node = nodes.get(d);
      if (!node && d !== root) return;
      manifests.push(d);
      for (const b of node?.blobs ?? []) blobs.add(b);
      for (const c of node?.children ?? []) visit(c);
    };
    visit(root);
    if (!nodes.has(root)) manifests.splice(manifests.indexOf(root), 1);
    for (const d of [...manifests, ...blobs]) covered.add(d);
    let lastAccess = -Infinity;
    for (const d of manifests) lastAccess = Math.max(lastAccess, accessTimes?.manifestAccess(repo, d) ?? -Infinity);
    if (lastAccess === -Infinity) {
      for (const d of manifests) lastAccess = Math.max(lastAccess, (await store.statManifestLink(repo, d))?.modified.getTime() ?? -Infinity);
    }
    units.push({
      id: `${repo}@${root}`,
      repo,
      kind: 'image',
      digest: root,
      tags: (tagsOf.get(root) ?? []).sort(),
      manifests,
      blobs: [...blobs].sort(),
      lastAccess: lastAccess === -Infinity ? 0 : lastAccess,
    });
  }
  for (const digest of await store.listLayers(repo)) {
    if (covered.has(digest)) continue;
    const lastAccess = accessTimes?.blobAccess(repo, digest) ?? (await store.statLayerLink(repo, digest))?.modified.getTime() ?? 0;
    units.push({ id: `${repo}@${digest}`, repo, kind: 'blob', digest, tags: [], manifests: [], blobs: [digest], lastAccess });
  }
  return units;
}

/**
 * Every digest local repositories need: their manifests (and, recursively,
 * index children), the configs and layers those refer to, tag targets, and
 * every blob linked into them (a push in progress links its blobs first).
 */
export async function localDigests(store: ContentStore, localRepos: string[], logger?: Logger): Promise<Set<string>> {
  const needed = new Set<string>();
  const walked = new Set<string>();
  const walk = async (digest: string, mediaType: string | undefined): Promise<void> => {
    needed.add(digest);
    if (walked.has(digest)) return;
    walked.add(digest);
    const bytes = await store.getBlob(digest);
    if (!bytes) return;
    let parsed;
    try {
      parsed = parseManifest(bytes, mediaType || undefined);
    } catch (err) {
      // Not a manifest we can read (or a plain blob): keep what we know, which is at least its own digest.
      logger?.debug({ digest, err }, 'local manifest not understood');
      return;
    }
    for (const b of parsed.blobs) needed.add(b.digest);
    for (const c of parsed.manifests) await walk(c.digest, c.mediaType);
  };
  for (const repo of localRepos) {
    for (const d of await store.listLayers(repo)) needed.add(d);
    for (const d of await store.listManifests(repo)) {
      const m = await store.getManifest(repo, d);
      await walk(d, m?.mediaType);
    }
    for (const tag of await store.listTags(repo)) {
      const link = await store.getTag(repo, tag);
      if (link) await walk(link.digest, link.mediaType);
    }
  }
  return needed;
}
