/** An upstream's pull quota as its rate-limit headers state it (Docker Hub style). */
export interface RateLimit {
  limit: number;
  remaining: number;
  /** The quota window from `;w=`, when given. */
  windowSeconds: number | undefined;
}

/**
 * Parses `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 76;w=21600`
 * (also the draft's list form `100, 100;w=21600`, whose first number is the
 * current limit). Returns undefined unless both headers carry a number.
 */
export function parseRateLimit(limitHeader: string | undefined, remainingHeader: string | undefined): RateLimit | undefined {
  const limit = parseQuota(limitHeader);
  const remaining = parseQuota(remainingHeader);
  if (!limit || !remaining) return undefined;
  return { limit: limit.value, remaining: remaining.value, windowSeconds: limit.window ?? remaining.window };
}

/** True when less than `fraction` (default 10%) of the quota is left. */
export function isRateLimitLow(rateLimit: RateLimit, fraction = 0.1): boolean {
  return rateLimit.remaining < rateLimit.limit * fraction;
}

function parseQuota(header: string | undefined): { value: number; window: number | undefined } | undefined {
  if (header === undefined) return undefined;
  let value: number | undefined;
  let window: number | undefined;
  for (const item of header.split(',')) {
    const [head, ...params] = item.split(';');
    const n = head!.trim();
    if (value === undefined) {
      if (!/^\d+$/.test(n)) return undefined;
      value = Number(n);
    }
    for (const p of params) {
      const m = /^\s*w\s*=\s*(\d+)\s*$/i.exec(p);
      if (m && window === undefined) window = Number(m[1]);
    }
  }
  return value === undefined ? undefined : { value, window };
}
