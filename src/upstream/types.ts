import type { ByteSource } from './body.ts';
import type { Descriptor } from '../registry/manifest.ts';

/** A manifest as an upstream answered it. */
export interface UpstreamManifest {
  mediaType: string;
  /** From Docker-Content-Digest; may be absent on some registries. */
  digest: string | undefined;
  size: number;
}

export interface UpstreamManifestBody extends UpstreamManifest {
  body: Buffer;
}

export interface UpstreamBlob {
  /** From Content-Length, when the upstream sent one. */
  size: number | undefined;
  /** The bytes, delivered in place (body.ts); `toReadable` makes a stream of them. */
  body: ByteSource;
}

/** Why an upstream call failed, as a stable code (never matched on message text). */
export type UpstreamErrorCode =
  | 'NOT_FOUND' // 404
  | 'UNAUTHORIZED' // 401 after token negotiation
  | 'DENIED' // 403
  | 'TOO_MANY_REQUESTS' // 429
  | 'UNAVAILABLE' // network error, timeout, 5xx
  | 'INVALID'; // a response that breaks the protocol (bad digest, oversize body, ...)

export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  readonly upstream: string;
  readonly status: number | undefined;
  /** Seconds from Retry-After on 429/503, when sent. */
  readonly retryAfter: number | undefined;

  constructor(
    code: UpstreamErrorCode,
    upstream: string,
    message: string,
    options: { status?: number; cause?: unknown; retryAfter?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'UpstreamError';
    this.code = code;
    this.upstream = upstream;
    this.status = options.status;
    this.retryAfter = options.retryAfter;
  }

  /** True when cached content may be served instead (the upstream is down or refusing load). */
  get allowsStale(): boolean {
    return this.code === 'UNAVAILABLE' || this.code === 'TOO_MANY_REQUESTS';
  }
}

/** A client for one configured upstream registry. Names are upstream repository names. */
export interface Upstream {
  readonly name: string;
  /** HEAD a manifest: its digest and type without the body. */
  headManifest(repository: string, reference: string): Promise<UpstreamManifest>;
  /** GET a manifest body, capped at the configured maximum size. */
  getManifest(repository: string, reference: string): Promise<UpstreamManifestBody>;
  /** HEAD a blob: its size, or throws NOT_FOUND (confirms the repository may read it). */
  headBlob(repository: string, digest: string): Promise<{ size: number | undefined }>;
  /** GET a blob as a stream (following redirects to storage hosts without credentials). */
  getBlob(repository: string, digest: string, signal?: AbortSignal): Promise<UpstreamBlob>;
  /**
   * Manifests whose subject is `digest` (the OCI referrers API), or
   * undefined when the upstream does not offer that API.
   */
  referrers?(repository: string, digest: string): Promise<Descriptor[] | undefined>;
  /** All tags of a repository (following pagination links, bounded). */
  listTags(repository: string): Promise<string[]>;
}
