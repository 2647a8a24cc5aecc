import { setTimeout as sleep } from 'node:timers/promises';
import pLimit from 'p-limit';
import type { Descriptor } from '../registry/manifest.ts';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/schema.ts';
import type { MetaStore } from '../meta/meta.ts';
import { digestOf, parseDigest } from '../registry/digest.ts';
import { manifestMediaTypes } from '../registry/mediatypes.ts';
import { onSettled } from './body.ts';
import { createExchange } from './exchange.ts';
import { isRateLimitLow, parseRateLimit, type RateLimit } from './ratelimit.ts';
import { isRetryable, retryDelay } from './retry.ts';
import { parseTokenResponse, TokenCache, tokenUrl, type IssuedToken, type TokenRequest } from './tokens.ts';
import { contentLength, createTransport, describe, discard, header, nextLink, readBody, statusError, type Opened } from './transport.ts';
import { UpstreamError, type Upstream, type UpstreamBlob, type UpstreamManifest, type UpstreamManifestBody } from './types.ts';

export interface UpstreamStats {
  /** Token requests sent to a realm. */
  tokenFetches: number;
  /** HTTP requests sent to the registry and its redirect targets (token requests not included). */
  requests: number;
  /** The quota from the last manifest response that carried rate-limit headers. */
  rateLimit?: RateLimit;
}

export interface UpstreamClient extends Upstream {
  stats(): UpstreamStats;
  /** Closes the keep-alive connections. */
  close(): void;
}

export interface UpstreamDeps {
  meta: MetaStore;
  logger: Logger;
  maxManifestSize: number;
  /** Told of every request to the upstream (for metrics): its status and time to headers, or its failure. */
  observe?: {
    request(method: string, status: number, seconds: number): void;
    error(code: string): void;
  };
}

const MAX_TAG_PAGES = 100;
/** Bound on a token response and on one page of a tag list. */
const MAX_JSON_BODY = 16 * 1024 * 1024;
const ACCEPT_MANIFESTS = manifestMediaTypes.join(', ');

/**
 * A client for one configured upstream registry: token negotiation with a
 * shared token cache, redirects to blob storage without credentials, retries
 * of idempotent calls, a concurrency bound, and rate-limit tracking.
 */
export function createUpstream(name: string, config: UpstreamConfig, deps: UpstreamDeps): UpstreamClient {
  const log = deps.logger.bindings().upstream === undefined ? deps.logger.child({ upstream: name }) : deps.logger;
  const { base, credentials } = splitUrl(config);
  const basic = credentials ? `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}` : undefined;
  const transport = createTransport(name, config, log);
  const limit = pLimit(config.concurrency);
  const tokens = new TokenCache({ upstream: name, meta: deps.meta, fetch: fetchToken, logger: log });
  let requests = 0;
  let rateLimit: RateLimit | undefined;

  /** A slot of the concurrency bound, held until `release` is called. */
  function acquire(signal?: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      void limit(
        () =>
          new Promise<void>((release) => {
            if (signal?.aborted) {
              release();
              reject(signal.reason as Error);
            } else {
              let done = false;
              resolve(() => {
                if (!done) release();
                done = true;
              });
            }
          }),
      );
    });
  }

  /** Runs an idempotent call, again on UNAVAILABLE after a backoff, up to config.retries times. */
  async function withRetries<T>(call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (err) {
        if (signal?.aborted) throw signal.reason;
        if (!(err instanceof UpstreamError) || attempt > config.retries || !isRetryable(err.status ?? err.code)) throw err;
        const delay = retryDelay(attempt, err.retryAfter !== undefined ? { retryAfterSeconds: err.retryAfter } : {});
        log.debug({ attempt, delay, status: err.status, message: err.message }, 'retrying upstream request');
        await sleep(delay, undefined, signal ? { signal } : {}).catch(() => {
          throw signal?.reason;
        });
      }
    }
  }

  async function withSlot<T>(call: () => Promise<T>): Promise<T> {
    const release = await acquire();
    try {
      return await call();
    } finally {
      release();
    }
  }

  const { request } = createExchange({
    upstream: name,
    origin: base.origin,
    basic,
    tokens,
    open: async (req) => {
      requests++;
      const started = performance.now();
      try {
        const res = await transport.open(req);
        deps.observe?.request(req.method, res.status, (performance.now() - started) / 1000);
        if (res.status >= 500 || res.status === 429) deps.observe?.error(res.status === 429 ? 'TOO_MANY_REQUESTS' : 'UNAVAILABLE');
        return res;
      } catch (err) {
        deps.observe?.error(err instanceof UpstreamError ? err.code : 'UNAVAILABLE');
        throw err;
      }
    },
  });

  function expectOk(res: Opened): void {
    if (res.status === 200) return;
    discard(res);
    throw statusError(name, res);
  }

  function trackRateLimit(res: Opened): void {
    const seen = parseRateLimit(header(res.headers, 'ratelimit-limit'), header(res.headers, 'ratelimit-remaining'));
    if (!seen) return;
    const wasLow = rateLimit !== undefined && isRateLimitLow(rateLimit);
    rateLimit = seen;
    if (isRateLimitLow(seen) && !wasLow) log.warn({ rateLimit: seen }, 'upstream pull quota nearly used up');
    else log.debug({ rateLimit: seen }, 'upstream pull quota');
  }

  function manifestUrl(repository: string, reference: string): URL {
    return endpoint(base, `${repository}/manifests/${reference}`);
  }

  /** Checks a digest the upstream sent (header or body) against the one asked for. */
  function checkDigest(res: Opened, expected: string, actual: string | undefined): void {
    if (actual !== undefined && actual !== expected) {
      throw new UpstreamError('INVALID', name, `${describe(name, res.method, res.url)}: digest ${actual} does not match ${expected}`, {
        status: res.status,
      });
    }
  }

  async function fetchToken(request: TokenRequest): Promise<IssuedToken> {
    const url = tokenUrl(request);
    // The realm came from this upstream's own challenge; credentials never travel over a downgraded scheme.
    const sendCredentials = basic !== undefined && (url.protocol === 'https:' || url.protocol === base.protocol);
    const headers = { accept: 'application/json', ...(sendCredentials ? { authorization: basic } : {}) };
    return withRetries(async () => {
      const res = await transport.open({ method: 'GET', url, headers });
      expectOk(res);
      const body = await readBody(name, res, MAX_JSON_BODY);
      const issued = parseTokenResponse(parseJson(body));
      if (!issued) throw new UpstreamError('INVALID', name, `${describe(name, 'GET', url)}: no token in the response`);
      return issued;
    });
  }

  return {
    name,

    headManifest(repository, reference): Promise<UpstreamManifest> {
      return withRetries(() =>
        withSlot(async () => {
          const res = await request({ method: 'HEAD', repository, url: manifestUrl(repository, reference), accept: ACCEPT_MANIFESTS });
          trackRateLimit(res);
          expectOk(res);
          discard(res);
          const digest = digestHeader(res);
          if (parseDigest(reference)) checkDigest(res, reference, digest);
          const size = contentLength(res.headers);
          if (size === undefined) throw new UpstreamError('INVALID', name, `${describe(name, 'HEAD', res.url)}: no Content-Length`);
          return { mediaType: mediaTypeOf(res), digest, size };
        }),
      );
    },

    getManifest(repository, reference): Promise<UpstreamManifestBody> {
      return withRetries(() =>
        withSlot(async () => {
          const res = await request({ method: 'GET', repository, url: manifestUrl(repository, reference), accept: ACCEPT_MANIFESTS });
          trackRateLimit(res);
          expectOk(res);
          const body = await readBody(name, res, deps.maxManifestSize);
          const sent = digestHeader(res);
          const expected = parseDigest(reference) ?? (sent ? parseDigest(sent) : undefined);
          const actual = digestOf(body, expected?.algorithm ?? 'sha256');
          if (expected) checkDigest(res, expected.value, actual);
          return { mediaType: mediaTypeOf(res, body), digest: actual, size: body.length, body };
        }),
      );
    },

    headBlob(repository, digest): Promise<{ size: number | undefined }> {
      return withRetries(() =>
        withSlot(async () => {
          const res = await request({ method: 'HEAD', repository, url: endpoint(base, `${repository}/blobs/${digest}`), accept: '*/*' });
          expectOk(res);
          discard(res);
          if (parseDigest(digest)) checkDigest(res, digest, digestHeader(res));
          return { size: contentLength(res.headers) };
        }),
      );
    },

    getBlob(repository, digest, signal): Promise<UpstreamBlob> {
      const url = endpoint(base, `${repository}/blobs/${digest}`);
      return withRetries(async () => {
        const release = await acquire(signal);
        let res: Opened | undefined;
        try {
          res = await request({ method: 'GET', repository, url, accept: '*/*', blob: true, ...(signal ? { signal } : {}) });
          expectOk(res);
          if (parseDigest(digest)) checkDigest(res, digest, digestHeader(res));
        } catch (err) {
          // A refused response's connection is freed now, not at its idle timeout.
          if (res?.status === 200) res.body.destroy();
          release();
          throw err;
        }
        // The slot is held while the caller reads; any way the body stops frees it.
        return { size: contentLength(res.headers), body: onSettled(res.body, release) };
      }, signal);
    },

    referrers(repository, digest): Promise<Descriptor[] | undefined> {
      return withRetries(() =>
        withSlot(async () => {
          const url = endpoint(base, `${repository}/referrers/${digest}`);
          let res: Opened;
          try {
            res = await request({ method: 'GET', repository, url, accept: 'application/vnd.oci.image.index.v1+json' });
            expectOk(res);
          } catch (err) {
            // Registries without the referrers API answer 404 (or 405): there is nothing to forward.
            if (err instanceof UpstreamError && (err.code === 'NOT_FOUND' || err.status === 405)) return undefined;
            throw err;
          }
          const body = parseJson(await readBody(name, res, deps.maxManifestSize)) as { manifests?: unknown } | null | undefined;
          if (typeof body !== 'object' || body === null || !Array.isArray(body.manifests)) {
            throw new UpstreamError('INVALID', name, `${describe(name, 'GET', res.url)}: not an image index`);
          }
          return body.manifests as Descriptor[];
        }),
      );
    },

    async listTags(repository): Promise<string[]> {
      const tags: string[] = [];
      let url: URL | undefined = endpoint(base, `${repository}/tags/list`);
      for (let page = 0; url && page < MAX_TAG_PAGES; page++) {
        const pageUrl: URL = url;
        const result = await withRetries(() =>
          withSlot(async () => {
            const res = await request({ method: 'GET', repository, url: pageUrl, accept: 'application/json' });
            expectOk(res);
            const body = parseJson(await readBody(name, res, MAX_JSON_BODY)) as { tags?: unknown } | null | undefined;
            const list = body?.tags ?? [];
            if (typeof body !== 'object' || body === null || !Array.isArray(list) || !list.every((t) => typeof t === 'string')) {
              throw new UpstreamError('INVALID', name, `${describe(name, 'GET', res.url)}: not a tag list`);
            }
            return { list: list as string[], next: nextLink(header(res.headers, 'link'), res.url) };
          }),
        );
        tags.push(...result.list);
        if (result.next && result.next.origin !== base.origin) {
          throw new UpstreamError('INVALID', name, `${describe(name, 'GET', pageUrl)}: pagination link leaves the registry`);
        }
        url = result.next;
      }
      if (url) throw new UpstreamError('INVALID', name, `${describe(name, 'GET', url)}: more than ${MAX_TAG_PAGES} pages of tags`);
      return tags;
    },

    stats: () => ({ tokenFetches: tokens.fetches, requests, ...(rateLimit ? { rateLimit: { ...rateLimit } } : {}) }),

    close: () => transport.close(),
  };
}

/** config.url without userinfo; userinfo there counts as credentials when none are configured. */
function splitUrl(config: UpstreamConfig): { base: URL; credentials: { username: string; password: string } | undefined } {
  const base = new URL(config.url);
  let credentials = config.username !== undefined ? { username: config.username, password: config.password ?? '' } : undefined;
  if (base.username || base.password) {
    credentials ??= { username: decodeURIComponent(base.username), password: decodeURIComponent(base.password) };
    base.username = '';
    base.password = '';
  }
  base.search = '';
  base.hash = '';
  return { base, credentials };
}

/** `<base>/v2/<rest>`, keeping a path prefix of the base URL. */
function endpoint(base: URL, rest: string): URL {
  const url = new URL(base);
  url.pathname = `${base.pathname.replace(/\/+$/, '')}/v2/${rest}`;
  return url;
}

function digestHeader(res: Opened): string | undefined {
  const value = header(res.headers, 'docker-content-digest')?.trim();
  return value && parseDigest(value) ? value : undefined;
}

/** Content-Type without parameters; for a body without one, the manifest's own `mediaType` field. */
function mediaTypeOf(res: Opened, body?: Buffer): string {
  const type = header(res.headers, 'content-type')?.split(';')[0]!.trim().toLowerCase();
  if (type) return type;
  const field = body ? (parseJson(body) as { mediaType?: unknown } | undefined)?.mediaType : undefined;
  return typeof field === 'string' ? field : '';
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch {
    return undefined;
  }
}
