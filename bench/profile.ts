/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function, highest
 * first. Usable alone: `node bench/profile.ts FILE.cpuprofile [TOP]`.
 */
import { readFile } from 'node:fs/promises';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  name: string;
  where: string;
  selfMs: number;
  /** Share of the non-idle time. */
  busyPct: number;
}

export async function summarizeProfile(file: string, top = 20): Promise<{ totalMs: number; idleMs: number; hot: HotFunction[] }> {
  const profile = JSON.parse(await readFile(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { name: string; where: string; us: number }>();
  let total = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const us = profile.timeDeltas[i] ?? 0;
    total += us;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    if (frame.functionName === '(idle)') {
      idle += us;
      return;
    }
    const where = frame.url ? `${frame.url.replace(/^file:\/\/.*?\/(node_modules|src)\//, '$1/')}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName}@${where}`;
    const entry = self.get(key) ?? { name: frame.functionName || '(anonymous)', where, us: 0 };
    entry.us += us;
    self.set(key, entry);
  });
  const busy = total - idle;
  const hot = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ name: e.name, where: e.where, selfMs: e.us / 1000, busyPct: (100 * e.us) / busy }));
  return { totalMs: total / 1000, idleMs: idle / 1000, hot };
}

export function renderProfile(file: string, s: Awaited<ReturnType<typeof summarizeProfile>>): string {
  const lines = [`CPU profile ${file}: ${(s.totalMs / 1000).toFixed(1)} s sampled, ${((100 * (s.totalMs - s.idleMs)) / s.totalMs).toFixed(0)}% busy`];
  lines.push('  self ms   % busy  function (where)');
  for (const h of s.hot) lines.push(`  ${h.selfMs.toFixed(0).padStart(7)}  ${h.busyPct.toFixed(1).padStart(6)}%  ${h.name} ${h.where ? `(${h.where})` : ''}`);
  return lines.join('\n');
}

if (import.meta.filename === process.argv[1]) {
  const file = process.argv[2];
  if (!file) throw new Error('usage: node bench/profile.ts FILE.cpuprofile [TOP]');
  process.stdout.write(`${renderProfile(file, await summarizeProfile(file, Number(process.argv[3] ?? 25)))}\n`);
}
