import type { UpstreamErrorCode } from './types.ts';

export interface RetryDelayOptions {
  /** Ceiling of the first retry's delay (default 250 ms); it doubles per attempt. */
  baseMs?: number;
  /** No delay is longer than this (default 10 s), Retry-After included. */
  maxMs?: number;
  /** The upstream's Retry-After, in seconds, when it sent one. */
  retryAfterSeconds?: number;
  /** Source of randomness in [0, 1), for tests. */
  random?: () => number;
}

const DEFAULT_BASE_MS = 250;
const DEFAULT_MAX_MS = 10_000;

/**
 * Milliseconds to wait before retry number `attempt` (1 for the first retry):
 * exponential backoff with full jitter, a uniform pick in
 * [0, min(maxMs, baseMs * 2^(attempt-1))), so that replicas retrying the same
 * upstream spread out. A Retry-After is honoured as a lower bound; the result
 * never exceeds maxMs.
 */
export function retryDelay(attempt: number, opts: RetryDelayOptions = {}): number {
  const base = opts.baseMs ?? DEFAULT_BASE_MS;
  const max = opts.maxMs ?? DEFAULT_MAX_MS;
  const random = opts.random ?? Math.random;
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  const ceiling = Math.min(max, base * 2 ** exponent);
  let delay = Math.floor(random() * ceiling);
  if (opts.retryAfterSeconds !== undefined && Number.isFinite(opts.retryAfterSeconds) && opts.retryAfterSeconds > 0) {
    delay = Math.max(delay, Math.ceil(opts.retryAfterSeconds * 1000));
  }
  return Math.max(0, Math.min(delay, max));
}

const retryableStatuses = new Set([408, 500, 502, 503, 504]);

/**
 * Whether a failed idempotent call is worth repeating: network errors,
 * timeouts and transient 5xx are; 429 is not (the upstream asked us to back
 * off, and the caller serves stale content instead), nor is anything else.
 * Takes an UpstreamError code or an HTTP status.
 */
export function isRetryable(reason: UpstreamErrorCode | number): boolean {
  if (typeof reason === 'number') return retryableStatuses.has(reason);
  return reason === 'UNAVAILABLE';
}

/**
 * Parses a Retry-After header (delay-seconds or an HTTP-date) into seconds
 * from `now`; undefined when absent or malformed, 0 for a date in the past.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text);
  if (!/^[A-Za-z]{3}/.test(text)) return undefined; // IMF-fixdate and friends start with a day name
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}
