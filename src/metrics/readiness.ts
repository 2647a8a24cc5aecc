import { randomUUID } from 'node:crypto';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { getCACertificates } from 'node:tls';

/** One readiness check's outcome. */
export interface ReadyCheck {
  name: string;
  ok: boolean;
  /** A failing critical check makes the process not ready; others are only reported. */
  critical: boolean;
  /** `ok`, or why not (an error code and message, credentials removed). */
  detail: string;
  ms: number;
}

export interface ReadyReport {
  checks: ReadyCheck[];
}

/** Ready when every critical check passed. Pure. */
export function isReady(report: ReadyReport): boolean {
  return report.checks.every((c) => c.ok || !c.critical);
}

export interface ReadinessDeps {
  /** The filesystem storage root; a small file is written and removed under `<root>/_tmp`. */
  storageRoot: string;
  /** Checked (critical) when configured. */
  redis?: { ping(): Promise<void> };
  /** Each upstream's `/v2/`; reported, never critical. A probe resolves on any HTTP answer. */
  upstreams: ReadonlyArray<{ name: string; probe(signal: AbortSignal): Promise<void> }>;
  /** Bound on the storage and Redis checks (default 2000 ms). */
  timeoutMs?: number;
  /** Bound on each upstream probe (default 2000 ms). */
  upstreamTimeoutMs?: number;
}

/**
 * The readiness checks of one process, run concurrently, each bounded by a
 * timeout. Concurrent callers (several probes at once) share one run.
 */
export function readinessChecks(deps: ReadinessDeps): () => Promise<ReadyReport> {
  const timeoutMs = deps.timeoutMs ?? 2000;
  const upstreamTimeoutMs = deps.upstreamTimeoutMs ?? 2000;
  const run = async (): Promise<ReadyReport> => {
    const checks: Array<Promise<ReadyCheck>> = [
      bounded('storage', true, timeoutMs, () => storageWritable(deps.storageRoot)),
    ];
    const redis = deps.redis;
    if (redis) checks.push(bounded('redis', true, timeoutMs, () => redis.ping()));
    for (const up of deps.upstreams) {
      checks.push(bounded(`upstream:${up.name}`, false, upstreamTimeoutMs, (signal) => up.probe(signal)));
    }
    return { checks: await Promise.all(checks) };
  };
  let current: Promise<ReadyReport> | undefined;
  return () =>
    (current ??= run().finally(() => {
      current = undefined;
    }));
}

/** Runs a check under a time bound; the signal aborts when the bound passes. Never rejects. */
async function bounded(name: string, critical: boolean, ms: number, check: (signal: AbortSignal) => Promise<void>): Promise<ReadyCheck> {
  const started = performance.now();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new Error(`no answer within ${ms} ms`);
      controller.abort(err);
      reject(Object.assign(err, { code: 'TIMEOUT' }));
    }, ms);
  });
  const done = (ok: boolean, detail: string): ReadyCheck => ({
    name,
    ok,
    critical,
    detail,
    ms: Math.round((performance.now() - started) * 10) / 10,
  });
  try {
    await Promise.race([check(controller.signal), timeout]);
    return done(true, 'ok');
  } catch (err) {
    return done(false, describeError(err));
  } finally {
    clearTimeout(timer);
  }
}

/** Writes and removes a small file where the storage driver stages its writes. */
async function storageWritable(root: string): Promise<void> {
  const dir = join(root, '_tmp');
  await mkdir(dir, { recursive: true });
  const file = join(dir, `readyz-${process.pid}-${randomUUID()}`);
  await writeFile(file, 'ready\n', { flag: 'wx' });
  await unlink(file);
}

/**
 * A probe of `<base>/v2/` that resolves on any HTTP answer (401 included):
 * the upstream is reachable. Credentials in the URL are never sent.
 */
export function httpProbe(
  base: string,
  tls: { ca?: string; insecureSkipVerify?: boolean } = {},
): (signal: AbortSignal) => Promise<void> {
  const url = new URL('v2/', base.endsWith('/') ? base : `${base}/`);
  url.username = '';
  url.password = '';
  const https = url.protocol === 'https:';
  const ca = https && tls.ca ? [...getCACertificates('default'), tls.ca] : undefined;
  return (signal) =>
    new Promise<void>((resolve, reject) => {
      const options = {
        method: 'GET',
        signal,
        headers: { 'user-agent': 'tender-readyz' },
        ...(https ? { rejectUnauthorized: !tls.insecureSkipVerify, ...(ca ? { ca } : {}) } : {}),
      };
      const req = (https ? httpsRequest : httpRequest)(url, options, (res) => {
        res.resume();
        res.destroy();
        resolve();
      });
      req.once('error', reject);
      req.end();
    });
}

function describeError(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  // Connection errors can quote a URL; keep userinfo out of the report.
  const safe = message.replace(/\/\/[^/@\s]*@/g, '//').slice(0, 300);
  return typeof e?.code === 'string' ? `${e.code}: ${safe}` : safe;
}
