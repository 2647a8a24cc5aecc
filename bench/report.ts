/**
 * The results of one benchmark run, the targets they are judged against, and the
 * printed table.
 */

/** One figure per system; undefined where a system was not measured. */
export interface Trio {
  tender: number;
  distribution: number;
  nginx: number;
}

export interface ManifestFigure {
  what: string;
  tool: string;
  rps: Trio;
  failures: Trio;
}

/** Cold pulls of the large image: median seconds per system, and every sample. */
export interface ColdPull {
  /** Where skopeo, the upstream and the proxy ran. */
  layout: string;
  direct: number;
  tender: number;
  distribution: number;
  samples: Record<'direct' | 'tender' | 'distribution', number[]>;
}

export interface Results {
  timestamp: string;
  mode: 'full' | 'quick';
  machine: { cpus: number; cpuModel: string; node: string; kernel: string; memGiB: number };
  pinning: string;
  note?: string;
  image: { largeLayerBytes: number; largeImageBytes: number; smallManifestBytes: number };
  warmBlobSingle: Trio & { nginxSendfile: number; nginxBuffered: number; runs: number; samples: Record<string, number[]> };
  warmBlobConcurrent: Trio & { nginxSendfile: number; nginxBuffered: number; streams: number; rounds: number; samples: Record<string, number[]> };
  /** CPU used by processes other than the benchmark's during the warm phases, % of the machine. */
  warmForeignCpuPct: number;
  manifests: ManifestFigure[];
  manifestSettings: { connections: number; seconds: number; slices: number; nginxListener: string };
  /** The judged cold pulls: client and servers on separate CPUs when the machine allows. */
  coldPull: ColdPull;
  /** The same pulls with nothing pinned (printed, not judged). */
  coldPullShared?: ColdPull;
  concurrentCold: {
    pulls: number;
    wallSeconds: number;
    /** The same pulls straight from the upstream. */
    directWallSeconds: number;
    blobGetsPerDigest: Record<string, number>;
    upstreamBlobBytes: number;
    upstreamManifestGets: number;
    imageBlobBytes: number;
    peakRssMb: number;
    sampledPeakRssMb: number;
  };
  warmTenderPeakRssMb: number | undefined;
  targets: Target[];
}

export interface Target {
  name: string;
  value: string;
  goal: string;
  pass: boolean;
}

const f0 = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');

/** The targets, computed from the figures. */
export function judge(r: Omit<Results, 'targets'>): Target[] {
  const t: Target[] = [];
  const ratio = (name: string, a: number, b: number, min: number): void => {
    t.push({ name, value: `${f2(a / b)}x`, goal: `>= ${min}x`, pass: a / b >= min });
  };
  ratio('warm blob 1 stream: tender / nginx', r.warmBlobSingle.tender, r.warmBlobSingle.nginx, 0.7);
  ratio('warm blob 1 stream: tender / Distribution', r.warmBlobSingle.tender, r.warmBlobSingle.distribution, 1.0);
  ratio(`warm blob ${r.warmBlobConcurrent.streams} streams: tender / nginx`, r.warmBlobConcurrent.tender, r.warmBlobConcurrent.nginx, 0.7);
  ratio(`warm blob ${r.warmBlobConcurrent.streams} streams: tender / Distribution`, r.warmBlobConcurrent.tender, r.warmBlobConcurrent.distribution, 1.0);
  for (const m of r.manifests) {
    const clean = m.failures.tender === 0;
    t.push({
      name: `manifest ${m.what}: tender / nginx`,
      value: `${f2(m.rps.tender / m.rps.nginx)}x${clean ? '' : ` (${m.failures.tender} failed)`}`,
      goal: '>= 0.3x',
      pass: clean && m.rps.tender / m.rps.nginx >= 0.3,
    });
  }
  const cold = r.coldPull.tender / r.coldPull.direct;
  t.push({ name: `cold pull: tender / direct${r.coldPullShared ? ' (split CPUs)' : ''}`, value: `${f2(cold)}x`, goal: '<= 1.15x', pass: cold <= 1.15 });
  const gets = Object.values(r.concurrentCold.blobGetsPerDigest);
  const once = gets.length > 0 && gets.every((n) => n === 1);
  t.push({
    name: `${r.concurrentCold.pulls} cold pulls: upstream GETs per blob`,
    value: gets.join(', '),
    goal: 'each 1',
    pass: once,
  });
  t.push({
    name: `${r.concurrentCold.pulls} cold pulls: tender peak RSS (VmHWM)`,
    value: `${f0(r.concurrentCold.peakRssMb)} MB`,
    goal: '< 200 MB',
    pass: r.concurrentCold.peakRssMb < 200,
  });
  return t;
}

/** Left-aligns the first column and right-aligns the others. */
function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
  return rows
    .map((row) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '))
    .join('\n');
}

export function render(r: Results): string {
  const out: string[] = [];
  const m = r.machine;
  out.push(`tender benchmark, ${r.mode} run, ${r.timestamp}`);
  out.push(`machine: ${m.cpus} CPUs (${m.cpuModel}), ${m.memGiB} GiB, node ${m.node}, Linux ${m.kernel}`);
  out.push(`pinning: ${r.pinning}`);
  if (r.note) out.push(`NOTE: ${r.note}`);
  out.push(`other processes on the machine used ${r.warmForeignCpuPct.toFixed(1)}% of its CPU during the warm phases${r.warmForeignCpuPct > 5 ? ' (NOISY: figures may be skewed)' : ''}`);
  out.push(
    `large image: one ${f2(r.image.largeLayerBytes / 1e6)} MB gzip layer (${f2(r.image.largeImageBytes / 1e6)} MB of blobs); small manifest: ${r.image.smallManifestBytes} B; MB = 10^6 bytes`,
  );
  out.push('');
  const ws = r.warmBlobSingle;
  const wc = r.warmBlobConcurrent;
  const rows: string[][] = [['warm (cache hit)', 'tender', 'Distribution', 'nginx', 'tender/nginx', 'tender/Distr.']];
  const row = (label: string, x: Trio, fmt: (n: number) => string): string[] => [
    label,
    fmt(x.tender),
    fmt(x.distribution),
    fmt(x.nginx),
    `${f2(x.tender / x.nginx)}x`,
    `${f2(x.tender / x.distribution)}x`,
  ];
  rows.push(row(`1. blob, 1 stream, MB/s (median of ${ws.runs})`, ws, f0));
  rows.push(row(`2. blob, ${wc.streams} streams, aggregate MB/s (median of ${wc.rounds})`, wc, f0));
  const ms = r.manifestSettings;
  for (const x of r.manifests) {
    const fails = x.failures.tender + x.failures.distribution + x.failures.nginx;
    const base = row(`3. manifest ${x.what}, req/s (${x.tool})`, x.rps, f0);
    if (fails > 0) base[0] += ` [failed: t=${x.failures.tender} d=${x.failures.distribution} n=${x.failures.nginx}]`;
    rows.push(base);
  }
  out.push(table(rows));
  out.push(
    `   nginx blob figure = best of sendfile on (1 stream ${f0(ws.nginxSendfile)}, ${wc.streams} streams ${f0(wc.nginxSendfile)}) and sendfile off + output_buffers 2 1m (${f0(ws.nginxBuffered)}, ${f0(wc.nginxBuffered)})`,
  );
  out.push(`   manifests: ${ms.connections} connections, ${ms.seconds} s each in ${ms.slices} slices taking turns (median slice), Accept: OCI/Docker manifest types; nginx listener: ${ms.nginxListener}`);
  out.push('');
  const colds = [r.coldPull, ...(r.coldPullShared ? [r.coldPullShared] : [])];
  out.push(
    table([
      ['4. cold pull of the large image (skopeo copy to oci:)', 'tender', 'Distribution', 'direct', 'tender/direct', 'Distr./direct'],
      ...colds.map((c, i) => [
        `   seconds, median of ${c.samples.direct.length}${i === 0 ? ' (judged)' : ' (not judged)'}`,
        f2(c.tender),
        f2(c.distribution),
        f2(c.direct),
        `${f2(c.tender / c.direct)}x`,
        `${f2(c.distribution / c.direct)}x`,
      ]),
    ]),
  );
  for (const c of colds) out.push(`   ${c.layout}: ${Object.entries(c.samples).map(([k, v]) => `${k} ${v.map(f2).join(' ')}`).join('; ')}`);
  out.push('');
  const cc = r.concurrentCold;
  out.push(`5. ${cc.pulls} concurrent cold pulls of the large image through tender (counting proxy in front of the upstream)`);
  out.push(
    table([
      ['   wall time (straight from the upstream: same pulls)', `${f2(cc.wallSeconds)} s (${f2(cc.directWallSeconds)} s, ${f2(cc.wallSeconds / cc.directWallSeconds)}x)`],
      ['   upstream blob GETs per digest', Object.entries(cc.blobGetsPerDigest).map(([d, n]) => `${d.slice(7, 19)}…: ${n}`).join(', ')],
      ['   upstream blob bytes / image blob bytes', `${f0(cc.upstreamBlobBytes)} / ${f0(cc.imageBlobBytes)} = ${f2(cc.upstreamBlobBytes / cc.imageBlobBytes)}x`],
      ['   upstream manifest GETs', String(cc.upstreamManifestGets)],
      ['   tender peak RSS: VmHWM / sampled VmRSS max', `${f0(cc.peakRssMb)} MB / ${f0(cc.sampledPeakRssMb)} MB`],
    ]),
  );
  if (r.warmTenderPeakRssMb !== undefined) out.push(`   (warm-phase tender VmHWM: ${f0(r.warmTenderPeakRssMb)} MB)`);
  out.push('');
  out.push(table([['targets', 'value', 'goal', ''], ...r.targets.map((x) => [x.name, x.value, x.goal, x.pass ? 'PASS' : 'MISS'])]));
  const misses = r.targets.filter((x) => !x.pass).length;
  out.push(`${r.targets.length - misses} PASS, ${misses} MISS`);
  return out.join('\n');
}
