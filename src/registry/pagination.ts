import { RegistryError } from './errors.ts';

export interface Page {
  items: string[];
  /** The `last` value for the next page, when there is one. */
  next: string | undefined;
}

/** Parses the `n` query parameter; undefined means "no limit given". */
export function parsePageSize(n: string | undefined, max: number): number | undefined {
  if (n === undefined || n === '') return undefined;
  const value = Number(n);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RegistryError('PAGINATION_NUMBER_INVALID', { detail: { n } });
  }
  return Math.min(value, max);
}

/**
 * Lexically ordered pagination as the distribution spec describes it: the
 * items after `last`, at most `n` of them.
 */
export function paginate(all: readonly string[], n: number | undefined, last: string | undefined): Page {
  const sorted = [...new Set(all)].sort();
  const start = last === undefined ? sorted : sorted.filter((t) => t > last);
  if (n === undefined || start.length <= n) return { items: start, next: undefined };
  const items = start.slice(0, n);
  return { items, next: n > 0 ? items[items.length - 1] : undefined };
}
