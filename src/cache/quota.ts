import type { RateLimit } from '../upstream/ratelimit.ts';

/** Docker Hub's quota window (6 h), assumed when an upstream states none. */
export const defaultQuotaWindowSeconds = 21_600;

/**
 * Is the quota guard on? True when fewer than `threshold` pulls remain of the
 * quota last seen (at `observedAt`, epoch ms) and its window has not run out
 * since: until then a revalidation would only spend what is left. A
 * threshold of 0 turns the guard off.
 */
export function quotaGuardActive(
  rateLimit: Pick<RateLimit, 'limit' | 'remaining' | 'windowSeconds'> | undefined,
  threshold: number,
  observedAt: number,
  now: number,
): boolean {
  if (!rateLimit || threshold <= 0 || rateLimit.remaining >= threshold) return false;
  const windowMs = (rateLimit.windowSeconds ?? defaultQuotaWindowSeconds) * 1000;
  return now < observedAt + windowMs;
}

/** What the guard reads of an upstream client: its stats' last rate-limit headers (with when they were seen, if it says). */
export interface QuotaSource {
  stats(): { rateLimit?: RateLimit & { observedAt?: number } };
}

export interface QuotaGuardOptions {
  upstreams: ReadonlyMap<string, QuotaSource>;
  /** Remaining pulls under which an upstream's tags are served from cache; 0 = never. */
  threshold: (upstream: string) => number;
  now?: () => number;
}

/**
 * The guard ProxyManifests takes as `quotaGuard`. The upstream client keeps
 * the last rate-limit headers; when it does not say when it saw them, a
 * change of value is taken as a new observation.
 */
export function createQuotaGuard(options: QuotaGuardOptions): (upstream: string) => boolean {
  const now = options.now ?? Date.now;
  const seen = new Map<string, { value: string; at: number }>();
  return (upstream) => {
    const threshold = options.threshold(upstream);
    if (threshold <= 0) return false;
    const rateLimit = options.upstreams.get(upstream)?.stats().rateLimit;
    if (!rateLimit) return false;
    const t = now();
    let observedAt = rateLimit.observedAt;
    if (observedAt === undefined) {
      const value = `${rateLimit.limit}/${rateLimit.remaining}/${rateLimit.windowSeconds ?? ''}`;
      const last = seen.get(upstream);
      if (!last || last.value !== value) seen.set(upstream, { value, at: t });
      observedAt = seen.get(upstream)!.at;
    }
    return quotaGuardActive(rateLimit, threshold, observedAt, t);
  };
}
