import { DigestVerifier, parseDigest } from '../registry/digest.ts';
import { parseManifest, type Descriptor } from '../registry/manifest.ts';
import { isIndexMediaType, manifestMediaTypes } from '../registry/mediatypes.ts';

/** Progress of a warm run, as it happens. */
export type WarmEvent =
  /** The image's manifests are read: this many blobs (configs and layers) of this many bytes follow. */
  | { kind: 'image'; image: string; digest: string; manifests: number; blobs: number; bytes: number }
  /** Bytes of a blob arrived. */
  | { kind: 'bytes'; image: string; bytes: number }
  /** A blob was read whole and matched its digest. */
  | { kind: 'blob'; image: string; digest: string; size: number }
  | { kind: 'done'; image: string }
  | { kind: 'error'; image: string; message: string };

export interface WarmImageResult {
  image: string;
  /** The top manifest's digest (undefined when it could not be read). */
  digest?: string;
  manifests: number;
  blobs: number;
  bytes: number;
  error?: string;
}

export interface WarmOptions {
  /** The running tender, e.g. http://127.0.0.1:5000. */
  baseUrl: string;
  /** Names as clients pull them from tender: `hub/library/alpine:3.20`, `alpine`, `ghcr/o/i@sha256:…`. */
  images: string[];
  /** `os/arch[/variant]` to keep from indexes; none or empty means every platform. */
  platforms?: string[];
  /** `user:password` for tender's Basic authentication. */
  creds?: string;
  /** Blobs fetched at once per image (default 4). */
  concurrency?: number;
  onProgress?: (event: WarmEvent) => void;
  signal?: AbortSignal;
}

const accept = manifestMediaTypes.join(', ');

/**
 * Fills tender's cache ahead of use by pulling through its own v2 API, as a
 * client would: the manifest (an index's children for the chosen platforms),
 * then every config and layer, read whole, checked against its digest and
 * discarded. Going through the API keeps one path for filling the cache:
 * the same single flight, verification and links a client's pull gets.
 * Images are warmed one after another; a failed image does not stop the rest.
 */
export async function warm(options: WarmOptions): Promise<WarmImageResult[]> {
  const results: WarmImageResult[] = [];
  for (const image of options.images) {
    try {
      results.push(await warmImage(image, options));
      options.onProgress?.({ kind: 'done', image });
    } catch (err) {
      if (options.signal?.aborted) throw err;
      const message = err instanceof Error ? err.message : String(err);
      results.push({ image, manifests: 0, blobs: 0, bytes: 0, error: message });
      options.onProgress?.({ kind: 'error', image, message });
    }
  }
  return results;
}

/** Splits `name[:tag][@digest]` into the name and the reference to ask for (default tag `latest`). */
export function parseImageReference(image: string): { name: string; reference: string } {
  const at = image.indexOf('@');
  if (at !== -1) {
    const digest = image.slice(at + 1);
    if (!parseDigest(digest)) throw new Error(`${image}: not a valid digest reference`);
    const named = image.slice(0, at);
    const colon = named.lastIndexOf(':');
    return { name: colon > named.lastIndexOf('/') ? named.slice(0, colon) : named, reference: digest };
  }
  const colon = image.lastIndexOf(':');
  if (colon > image.lastIndexOf('/')) return { name: image.slice(0, colon), reference: image.slice(colon + 1) };
  return { name: image, reference: 'latest' };
}

/** Does the descriptor's platform match one of `os/arch[/variant]` (every platform when none is given)? */
export function platformWanted(descriptor: Descriptor, platforms: readonly string[] | undefined): boolean {
  if (!platforms || platforms.length === 0) return true;
  const p = descriptor.platform;
  if (!p) return false;
  return platforms.some((want) => {
    const [os, architecture, variant] = want.split('/');
    return p.os === os && p.architecture === architecture && (variant === undefined || p.variant === variant);
  });
}

async function warmImage(image: string, options: WarmOptions): Promise<WarmImageResult> {
  const { name, reference } = parseImageReference(image);
  const headers: Record<string, string> = {};
  if (options.creds) headers.authorization = `Basic ${Buffer.from(options.creds).toString('base64')}`;
  const base = options.baseUrl.replace(/\/+$/, '');
  const get = async (path: string, extra: Record<string, string> = {}): Promise<Response> => {
    const res = await fetch(`${base}/v2/${name}/${path}`, { headers: { ...headers, ...extra }, ...(options.signal ? { signal: options.signal } : {}) });
    if (res.status !== 200) {
      const body = await res.text().catch(() => '');
      const code = /"code"\s*:\s*"([A-Z_]+)"/.exec(body)?.[1];
      throw new Error(`GET /v2/${name}/${path}: ${res.status}${code ? ` ${code}` : ''}`);
    }
    return res;
  };

  const blobs = new Map<string, number>();
  let manifests = 0;
  let topDigest: string | undefined;
  const visit = async (ref: string, depth: number): Promise<void> => {
    if (depth > 4) throw new Error(`${image}: indexes nested too deep`);
    const res = await get(`manifests/${ref}`, { accept });
    const body = Buffer.from(await res.arrayBuffer());
    manifests++;
    const digest = res.headers.get('docker-content-digest') ?? ref;
    topDigest ??= digest;
    const mediaType = res.headers.get('content-type')?.split(';')[0]?.trim() || undefined;
    const parsed = parseManifest(body, mediaType);
    for (const b of parsed.blobs) if (!blobs.has(b.digest)) blobs.set(b.digest, b.size);
    if (isIndexMediaType(parsed.mediaType)) {
      const children = parsed.manifests.filter((c) => platformWanted(c, options.platforms));
      if (children.length === 0) throw new Error(`${image}: no manifest for platform ${options.platforms?.join(', ')}`);
      for (const child of children) await visit(child.digest, depth + 1);
    }
  };
  await visit(reference, 0);

  let bytes = 0;
  for (const size of blobs.values()) bytes += Math.max(size, 0);
  options.onProgress?.({ kind: 'image', image, digest: topDigest!, manifests, blobs: blobs.size, bytes });

  const queue = [...blobs.keys()];
  let read = 0;
  const worker = async (): Promise<void> => {
    for (let digest = queue.shift(); digest !== undefined; digest = queue.shift()) {
      const expected = parseDigest(digest);
      if (!expected) throw new Error(`${image}: invalid digest ${digest}`);
      const res = await get(`blobs/${digest}`);
      const verifier = new DigestVerifier(expected);
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        verifier.update(chunk);
        options.onProgress?.({ kind: 'bytes', image, bytes: chunk.length });
      }
      if (verifier.finish() !== digest) throw new Error(`${image}: blob ${digest} arrived with other content`);
      read += verifier.size;
      options.onProgress?.({ kind: 'blob', image, digest, size: verifier.size });
    }
  };
  const workers = Array.from({ length: Math.min(options.concurrency ?? 4, Math.max(queue.length, 1)) }, () =>
    worker().catch((err: unknown) => {
      queue.length = 0; // the others stop after their current blob
      throw err;
    }),
  );
  await Promise.all(workers);
  return { image, digest: topDigest!, manifests, blobs: blobs.size, bytes: read };
}
