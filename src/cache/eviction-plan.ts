/** What the eviction policy needs to know of one cached unit (an image or a loose blob). */
export interface PlanUnit {
  id: string;
  /** Last access, epoch ms. */
  lastAccess: number;
  /** Every digest the unit keeps alive: its manifests, configs and layers. */
  refs: readonly string[];
}

export interface PlanInput {
  units: readonly PlanUnit[];
  /** Stored size per digest; digests without one are not stored and count for nothing. */
  sizes: ReadonlyMap<string, number>;
  /** Digests local content needs: never freed, and not counted as cached bytes. */
  local: ReadonlySet<string>;
  /** Keep cached bytes at or under this; undefined for no budget. */
  budgetBytes?: number | undefined;
  /** Evict units unused for longer than this; undefined for no limit. */
  maxUnusedMs?: number | undefined;
  now: number;
}

export interface Plan {
  /** Unit ids to evict, least recently used first. */
  evict: string[];
  /** Digests no remaining unit or local content refers to, to delete. */
  free: string[];
  /** Cached bytes (distinct digests referred to by units, not by local content) before and after. */
  bytesBefore: number;
  bytesAfter: number;
}

/**
 * The eviction policy, without I/O: units go least recently used first
 * (ties by id) while the cached bytes exceed the budget, and any unit unused
 * for longer than maxUnusedMs goes regardless. A digest is freed only once no
 * remaining unit refers to it; local content's digests are never freed.
 */
export function planEviction(input: PlanInput): Plan {
  const counts = new Map<string, number>();
  for (const u of input.units) for (const d of new Set(u.refs)) counts.set(d, (counts.get(d) ?? 0) + 1);
  const cachedSize = (d: string): number => (input.local.has(d) ? 0 : (input.sizes.get(d) ?? 0));
  let bytes = 0;
  for (const d of counts.keys()) bytes += cachedSize(d);
  const bytesBefore = bytes;

  const order = [...input.units].sort((a, b) => a.lastAccess - b.lastAccess || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const evict: string[] = [];
  const free: string[] = [];
  for (const u of order) {
    const expired = input.maxUnusedMs !== undefined && input.now - u.lastAccess > input.maxUnusedMs;
    const over = input.budgetBytes !== undefined && bytes > input.budgetBytes;
    if (!expired && !over) continue;
    evict.push(u.id);
    for (const d of new Set(u.refs)) {
      const left = (counts.get(d) ?? 1) - 1;
      counts.set(d, left);
      if (left > 0) continue;
      bytes -= cachedSize(d);
      if (!input.local.has(d)) free.push(d);
    }
  }
  return { evict, free, bytesBefore, bytesAfter: bytes };
}
