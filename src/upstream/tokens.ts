import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { MetaStore } from '../meta/meta.ts';

/** What a Bearer token is asked for: the challenge's realm and service, and our scope. */
export interface TokenRequest {
  realm: string;
  service: string | undefined;
  /** e.g. `repository:library/alpine:pull` */
  scope: string;
}

/** A token as the realm issued it. */
export interface IssuedToken {
  token: string;
  /** Lifetime in seconds from `expires_in` (60 when the realm gave none, per the token spec). */
  expiresIn: number;
}

/** Performs the HTTP token request (GET realm?service=S&scope=X); injected so the cache stays testable. */
export type TokenFetcher = (request: TokenRequest) => Promise<IssuedToken>;

/** The token spec's default lifetime when `expires_in` is absent. */
export const DEFAULT_TOKEN_LIFETIME_SECONDS = 60;

/**
 * How long to reuse a token that lives `expiresIn` seconds: its lifetime minus
 * a safety margin of 10% or 10 s, whichever is smaller, and at least 1 s.
 * Zero means "do not cache".
 */
export function tokenCacheTtlMs(expiresIn: number): number {
  if (!Number.isFinite(expiresIn) || expiresIn <= 0) return 0;
  const margin = Math.max(1, Math.min(expiresIn * 0.1, 10));
  return Math.max(0, Math.round((expiresIn - margin) * 1000));
}

/** The token endpoint URL for a request: the realm with `service` and `scope` added to its query. */
export function tokenUrl(request: TokenRequest): URL {
  const url = new URL(request.realm);
  if (request.service !== undefined) url.searchParams.append('service', request.service);
  url.searchParams.append('scope', request.scope);
  return url;
}

/**
 * Reads a token endpoint's JSON answer (`token` or the OAuth2 `access_token`,
 * `expires_in`); undefined when it carries no token.
 */
export function parseTokenResponse(body: unknown): IssuedToken | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const b = body as Record<string, unknown>;
  const token = typeof b.token === 'string' && b.token !== '' ? b.token : b.access_token;
  if (typeof token !== 'string' || token === '') return undefined;
  const expiresIn =
    typeof b.expires_in === 'number' && Number.isFinite(b.expires_in) && b.expires_in > 0 ? b.expires_in : DEFAULT_TOKEN_LIFETIME_SECONDS;
  return { token, expiresIn };
}

/** A token handed to a request, and whether it was fetched just now (rather than found in the cache). */
export interface CachedToken {
  token: string;
  fresh: boolean;
}

/** The realm and service an upstream named in its last Bearer challenge. */
export interface KnownChallenge {
  realm: string;
  service: string | undefined;
}

/**
 * Bearer tokens for one upstream, cached in the MetaStore (so replicas sharing
 * Redis share tokens) under (upstream, realm, service, scope) until shortly
 * before they expire. Concurrent requests for one key share one fetch.
 */
export class TokenCache {
  readonly upstream: string;
  private readonly meta: MetaStore;
  private readonly fetchToken: TokenFetcher;
  private readonly logger: Logger | undefined;
  private readonly now: () => number;
  private readonly flights = new Map<string, Promise<CachedToken>>();
  private lastChallenge: KnownChallenge | undefined;
  private fetchCount = 0;

  constructor(options: { upstream: string; meta: MetaStore; fetch: TokenFetcher; logger?: Logger; now?: () => number }) {
    this.upstream = options.upstream;
    this.meta = options.meta;
    this.fetchToken = options.fetch;
    this.logger = options.logger;
    this.now = options.now ?? Date.now;
  }

  /** Token fetches made so far (cache misses that reached the realm, failed ones included). */
  get fetches(): number {
    return this.fetchCount;
  }

  /** The upstream's last Bearer challenge, so a new repository's token can be fetched before its first request. */
  get challenge(): KnownChallenge | undefined {
    return this.lastChallenge;
  }

  rememberChallenge(challenge: KnownChallenge): void {
    this.lastChallenge = { realm: challenge.realm, service: challenge.service };
  }

  /**
   * A token for the request, from the cache or the realm. Pass the token the
   * upstream just refused as `rejected` to get a different one: a cached copy
   * of it is dropped and a new one fetched.
   */
  async token(request: TokenRequest, rejected?: string): Promise<CachedToken> {
    const key = this.keyOf(request);
    let result: CachedToken | undefined;
    // Twice at most: a flight already under way when the token was refused may hand back that same token.
    for (let round = 0; round < 2; round++) {
      let flight = this.flights.get(key);
      if (!flight) {
        const started = this.load(key, request, rejected);
        flight = started.finally(() => {
          if (this.flights.get(key) === flight) this.flights.delete(key);
        });
        this.flights.set(key, flight);
      }
      result = await flight;
      if (rejected === undefined || result.token !== rejected) return result;
    }
    return result!;
  }

  private async load(key: string, request: TokenRequest, rejected: string | undefined): Promise<CachedToken> {
    try {
      const cached = await this.meta.get<{ token: string }>(key);
      if (cached && typeof cached.token === 'string' && cached.token !== rejected) return { token: cached.token, fresh: false };
    } catch (err) {
      this.logger?.warn({ err: errorSummary(err) }, 'token cache read failed');
    }
    const started = this.now();
    this.fetchCount++;
    const issued = await this.fetchToken(request);
    const ttl = tokenCacheTtlMs(issued.expiresIn) - (this.now() - started);
    try {
      if (ttl > 0) await this.meta.set(key, { token: issued.token }, ttl);
      else await this.meta.delete(key);
    } catch (err) {
      this.logger?.warn({ err: errorSummary(err) }, 'token cache write failed');
    }
    return { token: issued.token, fresh: true };
  }

  private keyOf(request: TokenRequest): string {
    const id = createHash('sha256').update(JSON.stringify([request.realm, request.service ?? null, request.scope])).digest('hex');
    return `upstream-token:${this.upstream}:${id.slice(0, 32)}`;
  }
}

function errorSummary(err: unknown): { message: string } {
  return { message: err instanceof Error ? err.message : String(err) };
}
