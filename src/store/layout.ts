import { parseDigest } from '../registry/digest.ts';

/**
 * Where things live in storage. Blobs (and manifests, which are blobs too)
 * are stored once by digest; repositories hold small link objects.
 *
 *   blobs/<alg>/<hex[0:2]>/<hex>                 content
 *   repos/<repo>/_manifests/<alg>/<hex>          {"mediaType": ...}: manifest is in repo
 *   repos/<repo>/_tags/<tag>                     {"digest": ..., "mediaType": ..., "size": ...}
 *   repos/<repo>/_layers/<alg>/<hex>             blob is in repo
 *   repos/<repo>/_referrers/<alg>/<subject-hex>/<hex>   descriptor of a manifest whose subject is <subject>
 *
 * `<repo>` is `cache/<upstream>/<name>` for cached upstream content and
 * `local/<name>` for pushed content. Name components never start with '_',
 * so link folders cannot collide with repository names.
 */
export function blobKey(digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new Error(`not a digest: ${digest}`);
  return `blobs/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}`;
}

function digestPath(digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new Error(`not a digest: ${digest}`);
  return `${d.algorithm}/${d.hex}`;
}

export function repoKey(repo: string): string {
  return `repos/${repo}`;
}

export function manifestLinkKey(repo: string, digest: string): string {
  return `${repoKey(repo)}/_manifests/${digestPath(digest)}`;
}

export function tagKey(repo: string, tag: string): string {
  return `${repoKey(repo)}/_tags/${tag}`;
}

export function tagsPrefix(repo: string): string {
  return `${repoKey(repo)}/_tags`;
}

export function layerLinkKey(repo: string, digest: string): string {
  return `${repoKey(repo)}/_layers/${digestPath(digest)}`;
}

export function referrersPrefix(repo: string, subject: string): string {
  return `${repoKey(repo)}/_referrers/${digestPath(subject)}`;
}

export function referrerKey(repo: string, subject: string, digest: string): string {
  const d = parseDigest(digest);
  if (!d) throw new Error(`not a digest: ${digest}`);
  return `${referrersPrefix(repo, subject)}/${d.algorithm}-${d.hex}`;
}

export function manifestsPrefix(repo: string): string {
  return `${repoKey(repo)}/_manifests`;
}

export function layersPrefix(repo: string): string {
  return `${repoKey(repo)}/_layers`;
}

/** Where every blob's content lives: `blobs/<alg>/<hex[0:2]>/<hex>`. */
export const blobsPrefix = 'blobs';

/** The repository key of cached content from an upstream. */
export function cacheRepo(upstream: string, name: string): string {
  return `cache/${upstream}/${name}`;
}

/** The repository key of pushed content. */
export function localRepo(name: string): string {
  return `local/${name}`;
}
