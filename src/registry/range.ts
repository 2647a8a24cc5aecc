import { RegistryError } from './errors.ts';

/** An inclusive byte range. */
export interface Range {
  start: number;
  end: number;
}

/**
 * Parses a single-range `Range: bytes=...` header against a blob size
 * (RFC 9110 §14.1.2). Returns undefined when the header should be ignored
 * (absent, not bytes, several ranges: the whole blob is served), and throws
 * RANGE_INVALID (416, with `Content-Range: bytes * /size`) when it cannot be
 * satisfied.
 */
export function parseRange(header: string | undefined, size: number): Range | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined;
  const [, first, last] = m as unknown as [string, string, string];
  let start: number;
  let end: number;
  if (first === '') {
    if (last === '') return undefined;
    const suffix = Number(last);
    if (suffix === 0) throw unsatisfiable(size);
    start = Math.max(0, size - suffix);
    end = size - 1;
  } else {
    start = Number(first);
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
    if (last !== '' && Number(last) < start) return undefined;
  }
  if (start >= size || size === 0) throw unsatisfiable(size);
  return { start, end };
}

function unsatisfiable(size: number): RegistryError {
  return new RegistryError('RANGE_INVALID', { headers: { 'Content-Range': `bytes */${size}` }, detail: { size } });
}
