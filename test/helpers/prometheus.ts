/**
 * A small parser of the Prometheus text format for tests: every sample keyed
 * as `name{a="x",b="y"}` (labels sorted by name, values unescaped) or `name`.
 */
export function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const { name, labels, rest } = parseSeries(line);
    const value = rest.trim().split(/\s+/)[0];
    if (value === undefined || value === '') throw new Error(`no value: ${line}`);
    samples.set(promKey(name, labels), parseValue(value));
  }
  return samples;
}

/** The key `parsePrometheus` uses for a sample. */
export function promKey(name: string, labels: Record<string, string | number> = {}): string {
  const names = Object.keys(labels).sort();
  if (names.length === 0) return name;
  return `${name}{${names.map((n) => `${n}="${labels[n]}"`).join(',')}}`;
}

function parseSeries(line: string): { name: string; labels: Record<string, string>; rest: string } {
  const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
  if (!m) throw new Error(`bad sample line: ${line}`);
  const name = m[0];
  let i = name.length;
  const labels: Record<string, string> = {};
  if (line[i] !== '{') return { name, labels, rest: line.slice(i) };
  i++;
  while (line[i] !== '}') {
    const lm = /^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(i));
    if (!lm) throw new Error(`bad labels: ${line}`);
    i += lm[0].length;
    let value = '';
    for (; line[i] !== '"'; i++) {
      if (i >= line.length) throw new Error(`unterminated label value: ${line}`);
      if (line[i] === '\\') {
        i++;
        value += line[i] === 'n' ? '\n' : line[i];
      } else {
        value += line[i];
      }
    }
    labels[lm[1]!] = value;
    i++;
    const sep = /^\s*,?\s*/.exec(line.slice(i));
    i += sep![0].length;
    if (i >= line.length) throw new Error(`unterminated labels: ${line}`);
  }
  return { name, labels, rest: line.slice(i + 1) };
}

function parseValue(v: string): number {
  if (v === '+Inf' || v === 'Inf') return Infinity;
  if (v === '-Inf') return -Infinity;
  // prom-client writes `Nan`; Prometheus parses NaN case-insensitively.
  if (v.toLowerCase() === 'nan') return NaN;
  const n = Number(v);
  if (Number.isNaN(n)) throw new Error(`bad value: ${v}`);
  return n;
}
