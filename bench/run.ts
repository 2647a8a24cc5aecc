/**
 * tender benchmark: warm blob and manifest serving against CNCF Distribution (proxy mode)
 * and nginx (static files), cold pulls against pulling straight from the upstream, and
 * 8 concurrent cold pulls (upstream fetches, peak RSS).
 *
 *   npm run bench [-- --quick] [-- --no-pin] [-- --cpu-prof]
 *
 * --quick     smaller layer, fewer runs, shorter loads (about a minute)
 * --no-pin    do not pin servers and clients to separate CPUs
 * --cpu-prof  run the warm tender with --cpu-prof and print its hottest functions
 *
 * Prints a table to stdout (progress to stderr) and writes bench/results/latest.json.
 */
import { mkdir, mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { skopeoPull } from '../test/helpers/clients.ts';
import { startCountingProxy } from '../test/helpers/counting-proxy.ts';
import { startDistribution } from '../test/helpers/distribution.ts';
import { buildImage, pushImage, type BuiltImage } from '../test/helpers/images.ts';
import { removeDir, tempDir } from '../test/helpers/tools.ts';
import { autocannonRate, concurrentMBps, curlDownload, downloadMBps, median, wrkGet, type RateResult } from './load.ts';
import { choosePinning, Cleanup, findPidByArg, foreignCpuMeter, killChildren, sampleRss, setAffinity } from './procs.ts';
import { renderProfile, summarizeProfile } from './profile.ts';
import { judge, render, type ColdPull, type ManifestFigure, type Results, type Trio } from './report.ts';
import { startDistributionProxy, startNginx, startTenderProcess, type Server } from './systems.ts';

const argv = new Set(process.argv.slice(2));
const quick = argv.has('--quick');
const cpuProf = argv.has('--cpu-prof');
const pinning = choosePinning(!argv.has('--no-pin'));

const P = quick
  ? { largeLayer: 100 * 1024 * 1024, singleRuns: 3, rounds: 2, manifestSlices: 2, sliceSeconds: 1, coldReps: 1, sharedColdReps: 1 }
  : { largeLayer: 200 * 1024 * 1024, singleRuns: 11, rounds: 9, manifestSlices: 7, sliceSeconds: 2, coldReps: 7, sharedColdReps: 3 };
const STREAMS = 8;
const CONNECTIONS = 32;
const COLD_PULLS = 8;
const ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const resultsDir = join(import.meta.dirname, 'results');

const cleanup = new Cleanup();
let benchRoot: string | undefined;
const started = Date.now();

function log(msg: string): void {
  process.stderr.write(`[bench +${((Date.now() - started) / 1000).toFixed(0).padStart(3)}s] ${msg}\n`);
}

function blobPath(layoutDir: string, digest: string): string {
  return join(layoutDir, 'blobs', 'sha256', digest.slice('sha256:'.length));
}

/** Pulls with skopeo, returns seconds, removes the copy. */
async function timedPull(ref: string): Promise<number> {
  const t = performance.now();
  const pulled = await skopeoPull(ref);
  const seconds = (performance.now() - t) / 1000;
  await removeDir(pulled.dir);
  return seconds;
}

/** Fails unless GET and HEAD of a manifest give its exact bytes, media type and length. */
async function checkManifest(url: string, bytes: Buffer): Promise<void> {
  const get = await fetch(url, { headers: { Accept: ACCEPT }, signal: AbortSignal.timeout(10_000) });
  const body = Buffer.from(await get.arrayBuffer());
  if (get.status !== 200 || !body.equals(bytes) || get.headers.get('content-type') !== OCI_MANIFEST) {
    throw new Error(`GET ${url}: ${get.status} ${get.headers.get('content-type')}, ${body.length} bytes`);
  }
  const head = await fetch(url, { method: 'HEAD', headers: { Accept: ACCEPT }, signal: AbortSignal.timeout(10_000) });
  if (head.status !== 200 || head.headers.get('content-length') !== String(bytes.length)) {
    throw new Error(`HEAD ${url}: ${head.status}, Content-Length ${head.headers.get('content-length')}`);
  }
}

async function machine(): Promise<Results['machine']> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  return {
    cpus: availableParallelism(),
    cpuModel: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1]?.trim() ?? 'unknown',
    node: process.version,
    kernel: release(),
    memGiB: Math.round(totalmem() / 2 ** 30),
  };
}

async function main(): Promise<void> {
  benchRoot = await tempDir('bench');
  // Every temp dir of the helpers (images, registries, pulls) and of skopeo lands below benchRoot.
  process.env.TMPDIR = benchRoot;
  log(`${quick ? 'quick' : 'full'} run; temp root ${benchRoot}`);

  // --- the upstream and the images ---------------------------------------------------
  const upstream = await startDistribution({ auth: 'none' });
  cleanup.add('upstream Distribution', () => upstream.stop());
  const upstreamPid = findPidByArg(join(dirname(upstream.rootDir), 'config.yml')) ?? 0;
  log('building images');
  const small = await buildImage({ layerSizes: [2_000_000, 30_000], compress: true });
  const large = await buildImage({ layerSizes: [P.largeLayer], compress: true });
  for (const [image, ref] of [[small, 'bench/small:latest'], [large, 'bench/large:latest']] as Array<[BuiltImage, string]>) {
    const pushed = await pushImage(image, upstream, ref);
    if (pushed.manifestDigest !== image.manifestDigest) throw new Error(`${ref}: upstream serves ${pushed.manifestDigest}, built ${image.manifestDigest}`);
  }
  const layer = large.layers[0]!;
  const configSize = (await stat(blobPath(large.layoutDir, large.configDigest))).size;
  const smallManifest = await readFile(blobPath(small.layoutDir, small.manifestDigest));
  log(`pushed: large layer ${layer.digest} (${layer.size} bytes), small manifest ${small.manifestDigest}`);

  // --- warm phase: servers pinned to one CPU, clients (this process and its children) to the rest
  if (pinning) await setAffinity(process.pid, pinning.client);
  const profDir = cpuProf ? await mkdtemp(join(benchRoot, 'prof-')) : undefined;
  const tender = await startTenderProcess({ upstreamUrl: upstream.url, cpus: pinning?.server, ...(profDir ? { cpuProfDir: profDir } : {}) });
  const stopTender = cleanup.add('tender (warm)', () => tender.stop());
  const dist = await startDistributionProxy({ upstreamUrl: upstream.url, cpus: pinning?.server });
  const stopDist = cleanup.add('Distribution proxy (warm)', () => dist.stop());
  const nginx = await startNginx({
    manifestType: OCI_MANIFEST,
    cpus: pinning?.server,
    files: [
      { urlPath: `/v2/bench/large/blobs/${layer.digest}`, data: { copyFrom: blobPath(large.layoutDir, layer.digest) } },
      { urlPath: '/v2/bench/small/manifests/latest', data: smallManifest },
      { urlPath: `/v2/bench/small/manifests/${small.manifestDigest}`, data: smallManifest },
    ],
  });
  const stopNginx = cleanup.add('nginx', () => nginx.stop());

  log('warming tender and the Distribution proxy (skopeo pulls of both images)');
  for (const s of [tender, dist] as Server[]) {
    for (const name of ['bench/small:latest', 'bench/large:latest']) await timedPull(`${s.host}/${name}`);
  }
  const manifestPaths = { tag: '/v2/bench/small/manifests/latest', digest: `/v2/bench/small/manifests/${small.manifestDigest}` };
  const bases = { tender: tender.url, distribution: dist.url, nginxSendfile: nginx.urls.sendfile, nginxBuffered: nginx.urls.buffered };
  for (const base of Object.values(bases)) for (const p of Object.values(manifestPaths)) await checkManifest(base + p, smallManifest);

  // Rounds interleave the systems (in a rotating order) so that a burst of outside load hits all of them alike.
  const meter = foreignCpuMeter([tender.pid, dist.pid, nginx.pid, upstreamPid]);
  const blobUrl = (base: string): string => `${base}/v2/bench/large/blobs/${layer.digest}`;
  const blobKeys = ['nginxSendfile', 'nginxBuffered', 'distribution', 'tender'] as const;
  const rotated = (r: number): Array<(typeof blobKeys)[number]> => blobKeys.map((_, i) => blobKeys[(i + r) % blobKeys.length]!);
  const single = { tender: [] as number[], distribution: [] as number[], nginxSendfile: [] as number[], nginxBuffered: [] as number[] };
  const conc = { tender: [] as number[], distribution: [] as number[], nginxSendfile: [] as number[], nginxBuffered: [] as number[] };
  for (const key of blobKeys) for (let i = 0; i < 2; i++) await curlDownload(blobUrl(bases[key]), layer.size);
  for (let r = 0; r < P.singleRuns; r++) for (const key of rotated(r)) single[key].push(await downloadMBps(blobUrl(bases[key]), layer.size));
  log(`1. warm blob, 1 stream, MB/s: ${blobKeys.map((k) => `${k} ${single[k].map((x) => x.toFixed(0)).join('/')}`).join('; ')}`);
  for (let r = 0; r < P.rounds; r++) for (const key of rotated(r)) conc[key].push(await concurrentMBps(blobUrl(bases[key]), layer.size, STREAMS));
  log(`2. warm blob, ${STREAMS} streams, MB/s: ${blobKeys.map((k) => `${k} ${conc[k].map((x) => x.toFixed(0)).join('/')}`).join('; ')}`);
  const med = (x: Record<(typeof blobKeys)[number], number[]>): Record<(typeof blobKeys)[number], number> =>
    ({ tender: median(x.tender), distribution: median(x.distribution), nginxSendfile: median(x.nginxSendfile), nginxBuffered: median(x.nginxBuffered) });
  const singleMed = med(single);
  const concMed = med(conc);

  // Manifests: nginx's buffered listener (small files go out in one writev; measured no slower than sendfile).
  const manifests: ManifestFigure[] = [];
  const systems = { tender: tender.url, distribution: dist.url, nginx: nginx.urls.buffered };
  // Warm-up, not measured: tender's JIT needs a few thousand requests to reach its steady state
  // (its first seconds run at about half speed); every system gets the same.
  for (const base of Object.values(systems)) {
    for (const path of Object.values(manifestPaths)) {
      await wrkGet(base + path, { connections: CONNECTIONS, seconds: P.sliceSeconds, headers: { Accept: ACCEPT } });
    }
  }
  // Each figure is the median of short slices, the systems taking turns slice by slice.
  let test = 0;
  for (const method of ['GET', 'HEAD'] as const) {
    for (const by of ['tag', 'digest'] as const) {
      const samples: Record<keyof Trio, number[]> = { tender: [], distribution: [], nginx: [] };
      const failures: Trio = { tender: 0, distribution: 0, nginx: 0 };
      const entries = Object.entries(systems) as Array<[keyof Trio, string]>;
      for (let slice = 0; slice < P.manifestSlices; slice++) {
        const shift = (test + slice) % entries.length;
        for (const [key, base] of [...entries.slice(shift), ...entries.slice(0, shift)]) {
          const url = base + manifestPaths[by];
          const opts = { connections: CONNECTIONS, seconds: P.sliceSeconds, headers: { Accept: ACCEPT } };
          const r: RateResult = method === 'GET' ? await wrkGet(url, opts) : await autocannonRate(url, { ...opts, method });
          samples[key].push(r.rps);
          failures[key] += r.failures;
        }
      }
      test++;
      // The median slice, as for the blob figures: one slice disturbed by the VM (nginx here swings from 24k to 52k req/s) does not move it.
      const rps: Trio = { tender: median(samples.tender), distribution: median(samples.distribution), nginx: median(samples.nginx) };
      log(`3. manifest ${method} by ${by}, req/s: ${entries.map(([k]) => `${k} ${samples[k].map((x) => x.toFixed(0)).join('/')}`).join('; ')}`);
      manifests.push({ what: `${method} by ${by}`, tool: method === 'GET' ? 'wrk' : 'autocannon', rps, failures });
    }
  }
  const warmCpu = meter.stop();
  log(`warm phases: other processes used ${warmCpu.foreignPct.toFixed(1)}% of the machine (all: ${warmCpu.machineBusyPct.toFixed(0)}%)`);
  const warmTenderPeakRssMb = tender.peakRssMb();
  await stopTender();
  await stopDist();
  await stopNginx();
  let profileText = '';
  if (profDir) {
    const file = (await readdir(profDir)).find((f) => f.endsWith('.cpuprofile'));
    if (file) profileText = renderProfile(file, await summarizeProfile(join(profDir, file), 25));
  }

  // --- cold pulls: an empty cache in a running proxy (fresh for each pull, warmed by one pull of
  // the small image), in two layouts. "split": the proxy under test alone on the server CPU,
  // skopeo and the upstream on the client CPU, as in the warm phases. Direct and proxied pulls
  // then differ only by the proxy, which has a CPU of its own as on its own host; the target is
  // judged on this. "shared": nothing pinned, skopeo, the proxy and the upstream competing for
  // the same 2 CPUs, which measures the proxy's CPU cost more than its latency; printed too, not
  // judged.
  const largeRef = 'bench/large:latest';
  const coldOrder = ['direct', 'tender', 'distribution'] as const;
  const coldSeries = async (layout: 'split' | 'shared', reps: number): Promise<ColdPull> => {
    const split = layout === 'split' && pinning !== undefined;
    if (pinning) {
      await setAffinity(process.pid, split ? pinning.client : pinning.all);
      if (upstreamPid) await setAffinity(upstreamPid, split ? pinning.client : pinning.all);
    }
    const samples: ColdPull['samples'] = { direct: [], tender: [], distribution: [] };
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < coldOrder.length; i++) {
        const which = coldOrder[(i + rep) % coldOrder.length]!;
        let seconds: number;
        if (which === 'direct') {
          seconds = await timedPull(`${upstream.host}/${largeRef}`);
        } else {
          const cpus = split ? pinning.server : undefined;
          const s = which === 'tender' ? await startTenderProcess({ upstreamUrl: upstream.url, cpus }) : await startDistributionProxy({ upstreamUrl: upstream.url, cpus });
          const stop = cleanup.add(`${which} (cold)`, () => s.stop());
          try {
            // A cold cache, not a cold process: a registry runs for days, so the proxy first
            // serves one pull of the small image (no blob in common with the large one).
            await timedPull(`${s.host}/bench/small:latest`);
            seconds = await timedPull(`${s.host}/${largeRef}`);
          } finally {
            await stop();
          }
        }
        samples[which].push(seconds);
        log(`4. cold pull (${split ? 'split' : 'shared'}) ${rep + 1}/${reps}, ${which}: ${seconds.toFixed(2)} s`);
      }
    }
    return {
      layout: split ? `proxy on CPU ${pinning.server}; skopeo and upstream on CPU ${pinning.client}` : 'nothing pinned: skopeo, proxy and upstream share every CPU',
      direct: median(samples.direct),
      tender: median(samples.tender),
      distribution: median(samples.distribution),
      samples,
    };
  };
  const coldPull = await coldSeries('split', P.coldReps);
  const coldPullShared = pinning ? await coldSeries('shared', P.sharedColdReps) : undefined;
  if (pinning) {
    await setAffinity(process.pid, pinning.all);
    if (upstreamPid) await setAffinity(upstreamPid, pinning.all);
  }

  // --- 8 concurrent cold pulls: straight from the upstream (baseline), then through a fresh tender behind a counting proxy ---
  const d0 = performance.now();
  const directPulls = await Promise.all(Array.from({ length: COLD_PULLS }, () => skopeoPull(`${upstream.host}/${largeRef}`)));
  const directWallSeconds = (performance.now() - d0) / 1000;
  for (const p of directPulls) await removeDir(p.dir);
  log(`5. ${COLD_PULLS} concurrent pulls straight from the upstream: ${directWallSeconds.toFixed(2)} s`);
  const counting = await startCountingProxy(upstream.url);
  const stopCounting = cleanup.add('counting proxy', () => counting.stop());
  const fresh = await startTenderProcess({ upstreamUrl: counting.url });
  const stopFresh = cleanup.add('tender (concurrent cold)', () => fresh.stop());
  counting.reset();
  const sampler = sampleRss(fresh.pid, 100);
  const t0 = performance.now();
  const pulls = await Promise.all(Array.from({ length: COLD_PULLS }, () => skopeoPull(`${fresh.host}/${largeRef}`)));
  const wallSeconds = (performance.now() - t0) / 1000;
  const sampledPeakRssMb = sampler.stop();
  const peakRssMb = fresh.peakRssMb() ?? NaN;
  for (const p of pulls) {
    if (!p.blobs.includes(layer.digest)) throw new Error(`a concurrent pull lacks ${layer.digest}`);
    await removeDir(p.dir);
  }
  await stopFresh();
  const blobGetsPerDigest: Record<string, number> = { [layer.digest]: 0, [large.configDigest]: 0 };
  for (const r of counting.requests) {
    const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(r.path);
    if (r.method === 'GET' && m?.[1]) blobGetsPerDigest[m[1]] = (blobGetsPerDigest[m[1]] ?? 0) + 1;
  }
  const concurrentCold = {
    pulls: COLD_PULLS,
    wallSeconds,
    directWallSeconds,
    blobGetsPerDigest,
    upstreamBlobBytes: counting.bytesServed({ method: 'GET', path: /\/blobs\// }),
    upstreamManifestGets: counting.count({ method: 'GET', path: /\/manifests\// }),
    imageBlobBytes: layer.size + configSize,
    peakRssMb,
    sampledPeakRssMb,
  };
  log(`5. ${COLD_PULLS} concurrent cold pulls: ${wallSeconds.toFixed(2)} s, blob GETs ${JSON.stringify(blobGetsPerDigest)}, VmHWM ${peakRssMb.toFixed(0)} MB`);
  await stopCounting();

  const partial: Omit<Results, 'targets'> = {
    timestamp: new Date().toISOString(),
    mode: quick ? 'quick' : 'full',
    machine: await machine(),
    pinning: pinning
      ? `servers under test on CPU ${pinning.server}, load generators on CPU ${pinning.client} (warm phases); judged cold pulls: proxy on CPU ${pinning.server}, skopeo and the upstream on CPU ${pinning.client}; the 8 concurrent cold pulls and a second cold-pull series unpinned`
      : 'none',
    ...(cpuProf ? { note: 'tender ran under --cpu-prof in the warm phases: its warm figures are lower than without' } : {}),
    image: { largeLayerBytes: layer.size, largeImageBytes: layer.size + configSize + large.manifestSize, smallManifestBytes: smallManifest.length },
    warmBlobSingle: {
      tender: singleMed.tender,
      distribution: singleMed.distribution,
      nginx: Math.max(singleMed.nginxSendfile, singleMed.nginxBuffered),
      nginxSendfile: singleMed.nginxSendfile,
      nginxBuffered: singleMed.nginxBuffered,
      runs: P.singleRuns,
      samples: single,
    },
    warmBlobConcurrent: {
      tender: concMed.tender,
      distribution: concMed.distribution,
      nginx: Math.max(concMed.nginxSendfile, concMed.nginxBuffered),
      nginxSendfile: concMed.nginxSendfile,
      nginxBuffered: concMed.nginxBuffered,
      streams: STREAMS,
      rounds: P.rounds,
      samples: conc,
    },
    warmForeignCpuPct: warmCpu.foreignPct,
    manifests,
    manifestSettings: { connections: CONNECTIONS, seconds: P.manifestSlices * P.sliceSeconds, slices: P.manifestSlices, nginxListener: 'sendfile off; output_buffers 2 1m' },
    coldPull,
    ...(coldPullShared ? { coldPullShared } : {}),
    concurrentCold,
    warmTenderPeakRssMb,
  };
  const results: Results = { ...partial, targets: judge(partial) };
  process.stdout.write(`\n${render(results)}\n`);
  if (profileText) process.stdout.write(`\n${profileText}\n`);
  await mkdir(resultsDir, { recursive: true });
  await writeFile(join(resultsDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  log(`wrote ${join(resultsDir, 'latest.json')}`);
}

let finishing: Promise<void> | undefined;
let interrupted = false;
async function finish(code: number): Promise<never> {
  finishing ??= (async () => {
    await cleanup.runAll();
    if (benchRoot) await removeDir(benchRoot);
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  })();
  await finishing;
  process.exit(code);
}

// Last resort if the process exits some other way: no server outlives the run (the test
// helpers also kill their daemons and remove their temp dirs at exit).
process.on('exit', () => killChildren());
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  // The helpers exit at once on these signals; the benchmark first stops what it started, in order.
  process.removeAllListeners(signal);
  process.once(signal, () => {
    interrupted = true;
    log(`${signal}: stopping everything`);
    void finish(130);
  });
}

main().then(
  () => finish(0),
  (err: unknown) => {
    if (interrupted) return finish(130);
    process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return finish(1);
  },
);
