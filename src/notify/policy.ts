/**
 * Delivery policy, as pure functions: retry delays, which events an endpoint
 * wants, and the body signature.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { matchesPattern } from '../auth/patterns.ts';
import type { EventAction, RegistryEvent } from './event.ts';

/**
 * The header carrying the body signature when an endpoint has a `secret`:
 * `sha256=<hex HMAC-SHA256 of the raw body, keyed with the secret>` (the same
 * scheme as GitHub's `X-Hub-Signature-256`). Receivers recompute it over the
 * bytes they received and compare in constant time.
 */
export const signatureHeader = 'X-Tender-Signature-256';

/** The exponential delay before retry number `attempt` (1 = first retry): backoff · 2^(attempt-1), at most maxMs. */
export function retryDelay(attempt: number, options: { backoffMs: number; maxMs: number }): number {
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  // 2^31 already exceeds any sane cap; stop before the number overflows.
  const delay = options.backoffMs * 2 ** Math.min(exponent, 31);
  return Math.min(delay, options.maxMs);
}

/** The pause between retries before the failure threshold is reached. */
export const quickRetryMs = 100;

/**
 * The pause after `failures` consecutive failed deliveries, in the manner of
 * Distribution's breaker: the first `threshold - 1` failures are retried
 * quickly; from the `threshold`-th on, the endpoint backs off exponentially
 * from `backoffMs`, capped at `maxMs`.
 */
export function failureDelay(failures: number, options: { threshold: number; backoffMs: number; maxMs: number }): number {
  if (failures < options.threshold) return Math.min(quickRetryMs, options.backoffMs);
  return retryDelay(failures - options.threshold + 1, { backoffMs: options.backoffMs, maxMs: options.maxMs });
}

/** What one endpoint wants to receive. */
export interface EndpointFilter {
  /** Distribution's `ignoredmediatypes`. */
  ignoredMediaTypes: readonly string[];
  ignore: { actions: readonly EventAction[]; mediaTypes: readonly string[] };
  /** Repository patterns (`acme/**`); an event is sent when its repository matches one. */
  repositories: readonly string[];
}

/** Whether an endpoint with this filter should receive the event. */
export function shouldDeliver(event: RegistryEvent, filter: EndpointFilter): boolean {
  if (filter.ignore.actions.includes(event.action)) return false;
  const mediaType = event.target.mediaType;
  if (mediaType !== undefined && (filter.ignoredMediaTypes.includes(mediaType) || filter.ignore.mediaTypes.includes(mediaType))) {
    return false;
  }
  return filter.repositories.some((pattern) => matchesPattern(event.target.repository, pattern));
}

/** The signature header value for a body: `sha256=<hex>`. */
export function sign(body: string | Uint8Array, secret: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** Whether a signature header value matches the body (constant-time comparison). */
export function verifySignature(body: string | Uint8Array, secret: string, header: string | undefined): boolean {
  if (!header) return false;
  const expected = Buffer.from(sign(body, secret));
  const given = Buffer.from(header);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
