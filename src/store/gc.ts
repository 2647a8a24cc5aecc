import type { Logger } from '../log.ts';
import { parseManifest, type ParsedManifest } from '../registry/manifest.ts';
import type { ContentStore } from './content-store.ts';

export interface GcOptions {
  /** Blobs modified less than this long ago are kept: they may belong to a push in progress. */
  graceMs: number;
  /** Report what would be deleted, delete nothing. */
  dryRun: boolean;
  /** The current time (milliseconds), for tests. */
  now?: number;
  logger?: Logger;
}

export interface GcResult {
  /** Distinct digests found referenced. */
  marked: number;
  /** Blobs deleted (with dryRun: that would be deleted). */
  deleted: Array<{ digest: string; size: number }>;
  freedBytes: number;
}

/** A manifest a local repository holds but gc cannot read: nothing is deleted then. */
export class GcError extends Error {
  readonly code = 'ERR_GC';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GcError';
  }
}

const cachePrefix = 'cache/';

/**
 * Mark and sweep over the store. Marked: every manifest linked in any
 * repository (local or cached) with its config, layers and, recursively, the
 * children of an index; every tag's target; and every blob linked into a
 * cached repository (cached content has its own eviction, never gc's).
 * Swept: every other blob last modified longer than `graceMs` ago.
 *
 * A local manifest that cannot be parsed aborts the run before anything is
 * deleted: its blobs cannot be told apart from garbage. Like Distribution's
 * gc, a blob that a client checked (HEAD) long ago and is about to reference
 * may still be swept; run gc when pushes are rare, or keep the grace long.
 */
export async function collectGarbage(store: ContentStore, options: GcOptions): Promise<GcResult> {
  const now = options.now ?? Date.now();
  const marked = await mark(store, options.logger);
  const deleted: GcResult['deleted'] = [];
  let freedBytes = 0;
  for await (const blob of store.listBlobs()) {
    if (marked.has(blob.digest) || now - blob.modified.getTime() < options.graceMs) continue;
    if (!options.dryRun) await store.deleteBlob(blob.digest);
    deleted.push({ digest: blob.digest, size: blob.size });
    freedBytes += blob.size;
    options.logger?.debug({ digest: blob.digest, size: blob.size, dryRun: options.dryRun }, 'unreferenced blob');
  }
  options.logger?.info({ marked: marked.size, deleted: deleted.length, freedBytes, dryRun: options.dryRun }, 'garbage collection done');
  return { marked: marked.size, deleted, freedBytes };
}

async function mark(store: ContentStore, logger: Logger | undefined): Promise<Set<string>> {
  const marked = new Set<string>();
  /** Manifests already walked (a digest may be marked as a plain blob before it is seen as a manifest). */
  const walked = new Set<string>();

  const walk = async (repo: string, digest: string, mediaType: string, body: Buffer): Promise<void> => {
    if (walked.has(digest)) return;
    walked.add(digest);
    marked.add(digest);
    let parsed: ParsedManifest;
    try {
      parsed = parseManifest(body, mediaType);
    } catch (err) {
      // Cached bytes are whatever the upstream sent; their blobs are kept by the layer links anyway.
      if (repo.startsWith(cachePrefix)) {
        logger?.warn({ repo, digest, err }, 'cached manifest not understood; its blobs are kept by their links');
        return;
      }
      throw new GcError(`manifest ${digest} in ${repo} cannot be parsed; nothing was deleted`, { cause: err });
    }
    for (const blob of parsed.blobs) marked.add(blob.digest);
    for (const child of parsed.manifests) {
      marked.add(child.digest);
      const childBody = await store.getBlob(child.digest);
      if (childBody) await walk(repo, child.digest, child.mediaType, childBody);
    }
  };

  for (const repo of await store.listRepositories({ withLayers: true })) {
    for (const digest of await store.listManifests(repo)) {
      const m = await store.getManifest(repo, digest);
      marked.add(digest);
      if (m) await walk(repo, m.digest, m.mediaType, m.body);
    }
    for (const tag of await store.listTags(repo)) {
      const link = await store.getTag(repo, tag);
      if (!link) continue;
      marked.add(link.digest);
      const body = await store.getBlob(link.digest);
      if (body) await walk(repo, link.digest, link.mediaType, body);
    }
    if (repo.startsWith(cachePrefix)) for (const digest of await store.listLayers(repo)) marked.add(digest);
  }
  return marked;
}
