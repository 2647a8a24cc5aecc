/** A cached tag as the freshness policy sees it. */
export interface TagState {
  digest: string;
  mediaType: string;
  size: number;
  /** When the upstream last confirmed (or we last tried and were told to wait), epoch ms. */
  checkedAt: number;
  /** Until when the tag is served without asking the upstream, epoch ms. */
  freshUntil: number;
}

/** Is the cached tag fresh at `now`? */
export function isFresh(state: Pick<TagState, 'freshUntil'>, now: number): boolean {
  return now < state.freshUntil;
}

/** The state after the upstream confirmed (or replaced) the tag. */
export function confirmed(target: Omit<TagState, 'checkedAt' | 'freshUntil'>, now: number, ttlMs: number): TagState {
  return { ...target, checkedAt: now, freshUntil: now + ttlMs };
}

/**
 * The state after a failed revalidation that served stale content: keep the
 * old target, and wait a short while before asking again, so an outage does
 * not make every request pay an upstream timeout.
 */
export function staleRetryLater(state: TagState, now: number, ttlMs: number, maxBackoffMs = 30_000): TagState {
  return { ...state, freshUntil: now + Math.min(ttlMs, maxBackoffMs) };
}
