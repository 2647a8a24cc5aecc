/**
 * The systems under test: tender as its own child process, CNCF Distribution as a
 * pull-through proxy, and nginx serving the same bytes from disk.
 */
import { copyFile, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { stringify } from 'yaml';
import { spawnDaemon, type Daemon } from '../test/helpers/daemon.ts';
import { startDistribution } from '../test/helpers/distribution.ts';
import { freePort, removeDir, tempDir, waitFor } from '../test/helpers/tools.ts';
import { findPidByArg, pinnedCommand, procStatusMb, setAffinity } from './procs.ts';

/** A server under test, with the pid whose memory and CPU are its own. */
export interface Server {
  url: string;
  host: string;
  pid: number;
  stop(): Promise<void>;
}

export interface TenderServer extends Server {
  root: string;
  /** VmHWM of the process so far, in MB. */
  peakRssMb(): number | undefined;
}

const repoRoot = join(import.meta.dirname, '..');

/** Waits until GET url answers (any status below 500), or the daemon dies. */
async function waitReady(what: string, url: string, daemon: Daemon, timeoutMs = 30_000): Promise<void> {
  await waitFor(
    what,
    async () => {
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) throw new Error(`exited early:\n${daemon.output()}`);
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.body?.cancel();
      return res.status < 500;
    },
    timeoutMs,
    100,
  );
}

/**
 * Starts tender (`node src/cli/main.ts serve --config FILE`) as a child process on a free
 * port, proxying `upstreamUrl` as upstream `hub` (the default upstream).
 */
export async function startTenderProcess(opts: { upstreamUrl: string; cpus?: string | undefined; cpuProfDir?: string }): Promise<TenderServer> {
  const dir = await tempDir('bench-tender');
  const root = join(dir, 'data');
  const configFile = join(dir, 'config.yaml');
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const config = {
      server: { host: '127.0.0.1', port, shutdownTimeout: '5s' },
      storage: { filesystem: { root } },
      proxy: { defaultUpstream: 'hub' },
      upstreams: { hub: { url: opts.upstreamUrl } },
      log: { level: 'warn' },
      // The ops listener on a free port too: never 5001, which anything else may hold.
      ops: { port: 0 },
    };
    await writeFile(configFile, stringify(config));
    const nodeArgs = opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [];
    const [cmd, args] = pinnedCommand(process.execPath, [...nodeArgs, join(repoRoot, 'src/cli/main.ts'), 'serve', '--config', configFile], opts.cpus);
    const daemon = spawnDaemon(cmd, args, { cwd: repoRoot });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitReady(`tender on ${port}`, `${url}/v2/`, daemon);
    } catch (e) {
      lastError = e;
      await daemon.stop();
      continue;
    }
    const pid = daemon.child.pid ?? 0;
    return {
      url,
      host: `127.0.0.1:${port}`,
      pid,
      root,
      peakRssMb: () => procStatusMb(pid, 'VmHWM'),
      async stop() {
        await daemon.stop(10_000);
        await removeDir(dir);
      },
    };
  }
  await removeDir(dir);
  throw new Error(`tender did not start: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
}

/** A fresh CNCF Distribution in proxy mode (`proxy.remoteurl`), empty cache, optionally pinned. */
export async function startDistributionProxy(opts: { upstreamUrl: string; cpus?: string | undefined }): Promise<Server> {
  const dist = await startDistribution({ auth: 'none', proxyRemoteUrl: opts.upstreamUrl });
  // The helper writes DIR/config.yml next to DIR/storage; the process is found by that argument.
  const pid = findPidByArg(join(dirname(dist.rootDir), 'config.yml'));
  if (pid === undefined) {
    await dist.stop();
    throw new Error('could not find the docker-registry process of the proxy');
  }
  if (opts.cpus) await setAffinity(pid, opts.cpus);
  return { url: dist.url, host: dist.host, pid, stop: () => dist.stop() };
}

/** A file nginx serves: its URL path, the file's bytes source, and its Content-Type. */
export interface StaticFile {
  urlPath: string;
  data: Buffer | { copyFrom: string };
}

export interface NginxServer {
  /** Two listeners on the same root: `sendfile on`, and `sendfile off; output_buffers 2 1m`. */
  urls: { sendfile: string; buffered: string };
  pid: number;
  stop(): Promise<void>;
}

/**
 * nginx (one worker, master_process off, so its pid is the worker) serving `files` from a
 * temp root. Paths containing /manifests/ get `manifestType`, everything else
 * application/octet-stream.
 */
export async function startNginx(opts: { files: StaticFile[]; manifestType: string; cpus?: string | undefined }): Promise<NginxServer> {
  const dir = await tempDir('bench-nginx');
  const root = join(dir, 'root');
  for (const f of opts.files) {
    const dest = join(root, ...f.urlPath.split('/').filter(Boolean));
    await mkdir(dirname(dest), { recursive: true });
    if (Buffer.isBuffer(f.data)) await writeFile(dest, f.data);
    else await copyFile(f.data.copyFrom, dest);
  }
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const [p1, p2] = [await freePort(), await freePort()];
    const temp = (name: string): string => `${name}_temp_path ${join(dir, name)};`;
    const server = (port: number, io: string): string => `
  server {
    listen 127.0.0.1:${port};
    root ${root};
    ${io}
    location ~ /manifests/ { default_type ${opts.manifestType}; }
  }`;
    const conf = `user root;
daemon off;
master_process off;
worker_processes 1;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  keepalive_requests 100000000;
  keepalive_timeout 65s;
  types {}
  default_type application/octet-stream;
  ${server(p1, 'sendfile on;')}
  ${server(p2, 'sendfile off; output_buffers 2 1m;')}
}
`;
    const confFile = join(dir, 'nginx.conf');
    await writeFile(confFile, conf);
    const [cmd, args] = pinnedCommand('nginx', ['-p', dir, '-c', confFile, '-e', join(dir, 'error.log')], opts.cpus);
    const daemon = spawnDaemon(cmd, args);
    const urls = { sendfile: `http://127.0.0.1:${p1}`, buffered: `http://127.0.0.1:${p2}` };
    try {
      await waitReady(`nginx on ${p1}`, `${urls.sendfile}/`, daemon, 10_000);
      await waitReady(`nginx on ${p2}`, `${urls.buffered}/`, daemon, 10_000);
    } catch (e) {
      lastError = e;
      await daemon.stop();
      continue;
    }
    return {
      urls,
      pid: daemon.child.pid ?? 0,
      async stop() {
        await daemon.stop();
        await removeDir(dir);
      },
    };
  }
  await removeDir(dir);
  throw new Error(`nginx did not start: ${lastError instanceof Error ? lastError.message : String(lastError)}`);
}
