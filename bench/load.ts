/**
 * Load generators: curl for blob downloads (the fastest client measured here: ~2 GB/s
 * from nginx over loopback, where a Node http client peaks near 0.9 GB/s), wrk for
 * manifest GETs and autocannon for manifest HEADs (wrk reports 0 req/s for HEAD
 * responses that carry a Content-Length). Every run is bounded in time.
 */
import autocannon from 'autocannon';
import { run } from '../test/helpers/tools.ts';

export const MB = 1e6;

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** One `curl -o /dev/null` download; throws unless 200 with exactly `expectedBytes`. */
export async function curlDownload(url: string, expectedBytes: number, timeoutMs = 120_000): Promise<{ bytes: number; seconds: number }> {
  const { stdout } = await run('curl', ['-sS', '-o', '/dev/null', '--max-time', String(timeoutMs / 1000), '-w', '%{http_code} %{size_download} %{time_total}', url], {
    timeoutMs: timeoutMs + 5000,
  });
  const [code, size, total] = stdout.trim().split(' ');
  const bytes = Number(size);
  if (code !== '200' || bytes !== expectedBytes) throw new Error(`GET ${url}: status ${code}, ${bytes} of ${expectedBytes} bytes`);
  return { bytes, seconds: Number(total) };
}

/** MB/s of one single-stream download. */
export async function downloadMBps(url: string, expectedBytes: number): Promise<number> {
  const { bytes, seconds } = await curlDownload(url, expectedBytes);
  return bytes / seconds / MB;
}

/**
 * Aggregate MB/s of `streams` concurrent downloads by one `curl --parallel` process: all bytes
 * over the wall time from its start to the last finish. One process rather than one per
 * stream: eight curl processes sharing the client CPU spend it switching between each other and
 * measured 1.2-1.4 GB/s from every server alike (the client CPU at 100 %, the server's at
 * 60-75 %), which says nothing about the server.
 */
export async function concurrentMBps(url: string, expectedBytes: number, streams: number, timeoutMs = 120_000): Promise<number> {
  const args = ['-sS', '--parallel', '--parallel-immediate', '--parallel-max', String(streams), '--max-time', String(timeoutMs / 1000), '-w', '%{http_code} %{size_download}\\n'];
  for (let i = 0; i < streams; i++) args.push('-o', '/dev/null', url);
  const started = performance.now();
  const { stdout } = await run('curl', args, { timeoutMs: timeoutMs + 5000 });
  const seconds = (performance.now() - started) / 1000;
  const transfers = stdout.trim().split('\n').map((line) => line.split(' '));
  const bad = transfers.filter(([code, size]) => code !== '200' || Number(size) !== expectedBytes);
  if (transfers.length !== streams || bad.length > 0) throw new Error(`GET ${url} x${streams}: ${stdout.trim().replaceAll('\n', '; ')}`);
  return (streams * expectedBytes) / seconds / MB;
}

/** Requests per second of a fixed-duration load, with anything that went wrong. */
export interface RateResult {
  rps: number;
  requests: number;
  /** Responses that were not 2xx, plus socket errors and timeouts. */
  failures: number;
  tool: 'wrk' | 'autocannon';
}

/** `wrk -t1 -cN -dS` GET with headers; parses Requests/sec and non-2xx/3xx and socket errors. */
export async function wrkGet(url: string, opts: { connections: number; seconds: number; headers: Record<string, string> }): Promise<RateResult> {
  const args = ['-t1', `-c${opts.connections}`, `-d${opts.seconds}s`, '--timeout', '5s'];
  for (const [k, v] of Object.entries(opts.headers)) args.push('-H', `${k}: ${v}`);
  const { stdout } = await run('wrk', [...args, url], { timeoutMs: (opts.seconds + 30) * 1000 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? NaN);
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1] ?? NaN);
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const errors = socketErrors ? socketErrors.slice(1).reduce((n, x) => n + Number(x), 0) : 0;
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${stdout}`);
  return { rps, requests, failures: non2xx + errors, tool: 'wrk' };
}

/** http-parser-js's index of the headers-complete callback (HTTPParser.kOnHeadersComplete). */
const kOnHeadersComplete = 2;

/**
 * autocannon 9 does not tell its parser that a HEAD response has no body, so it waits for
 * Content-Length bytes that never come (0 req/s, as wrk). This wraps the callback the
 * client installs on its parser so that it returns true ("skip the body") for HEAD.
 */
function headAwareParser(client: unknown): void {
  const parser = (client as { parser: Record<number, unknown> }).parser;
  let installed: ((info: unknown) => unknown) | undefined;
  Object.defineProperty(parser, kOnHeadersComplete, {
    configurable: true,
    get: () => (info: unknown) => {
      installed?.(info);
      return true;
    },
    set: (fn: (info: unknown) => unknown) => {
      installed = fn;
    },
  });
}

/** An autocannon run (in this process) of `method` with headers. */
export async function autocannonRate(url: string, opts: { method: 'GET' | 'HEAD'; connections: number; seconds: number; headers: Record<string, string> }): Promise<RateResult> {
  const result = await autocannon({
    url,
    method: opts.method,
    connections: opts.connections,
    duration: opts.seconds,
    headers: opts.headers,
    timeout: 5,
    ...(opts.method === 'HEAD' ? { setupClient: headAwareParser } : {}),
  });
  const requests = result['2xx'] + result.non2xx;
  if (requests === 0) throw new Error(`autocannon ${opts.method} ${url}: no responses (errors ${result.errors}, timeouts ${result.timeouts})`);
  return { rps: requests / result.duration, requests, failures: result.non2xx + result.errors + result.timeouts, tool: 'autocannon' };
}
