import { LRUCache } from 'lru-cache';

export interface FailedLoginLimiterOptions {
  /** Failures allowed per address within the window; the next attempt is refused. */
  max: number;
  /** Window length in milliseconds, counted from an address's first failure. */
  window: number;
  /** Addresses tracked at once (least recently used go first). */
  maxAddresses?: number;
}

interface Failures {
  count: number;
}

/**
 * Counts failed logins per client address in a fixed window that starts at the
 * first failure; an address with `max` failures is blocked until the window
 * ends. Bounded: at most `maxAddresses` addresses are remembered.
 */
export class FailedLoginLimiter {
  readonly #max: number;
  readonly #failures: LRUCache<string, Failures>;

  constructor(opts: FailedLoginLimiterOptions) {
    this.#max = opts.max;
    this.#failures = new LRUCache<string, Failures>({
      max: opts.maxAddresses ?? 10_000,
      ttl: opts.window,
      // The window runs from the first failure: later failures do not extend it.
      noUpdateTTL: true,
    });
  }

  /** Whether logins from this address are refused for now. */
  blocked(addr: string): boolean {
    return (this.#failures.get(addr)?.count ?? 0) >= this.#max;
  }

  /** Milliseconds until a blocked address may try again (0 when it is not blocked). */
  retryAfter(addr: string): number {
    if (!this.blocked(addr)) return 0;
    return Math.max(0, Math.ceil(this.#failures.getRemainingTTL(addr)));
  }

  failed(addr: string): void {
    const entry = this.#failures.get(addr);
    if (entry) entry.count++;
    else this.#failures.set(addr, { count: 1 });
  }

  /** A good login clears the address's failures. */
  succeeded(addr: string): void {
    this.#failures.delete(addr);
  }
}
