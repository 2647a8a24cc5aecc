import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import tls from 'node:tls';
import got, { type Got, type RequestError } from 'got';
import type { Logger } from 'pino';
import type { UpstreamConfig } from '../config/schema.ts';
import { collect, fromReadable, type ByteSource } from './body.ts';
import { Http1Client, Http1Error } from './http1.ts';
import { parseRetryAfter } from './retry.ts';
import { UpstreamError } from './types.ts';

/** A response whose headers have arrived; its body is not yet read. */
export interface Opened {
  status: number;
  headers: IncomingHttpHeaders;
  /** The URL this response came from. */
  url: URL;
  method: string;
  /** The body, delivered in place (see body.ts); backpressure reaches the socket. */
  body: ByteSource;
}

export interface OpenRequest {
  method: 'GET' | 'HEAD';
  url: URL;
  headers: Record<string, string>;
  /** Blob downloads get the overall `timeouts.blob` bound on top of connect/response/idle, and the lean HTTP/1.1 reader. */
  blob?: boolean;
  signal?: AbortSignal;
}

/** The HTTP layer of one upstream: keep-alive agents, TLS, timeouts, and errors made safe to log. */
export interface Transport {
  /** Sends a request; resolves when the headers arrive, rejects with UpstreamError (or the signal's reason). */
  open(request: OpenRequest): Promise<Opened>;
  close(): void;
}

/** Cap on error bodies drained to keep a connection reusable; bigger ones close it. */
const DRAIN_LIMIT = 64 * 1024;

/**
 * Control-plane requests (tokens, manifests, HEADs, tag lists) go through got;
 * blob GETs, where nearly all the bytes are, through the lean HTTP/1.1 client
 * (http1.ts), which reads into one reused buffer instead of allocating and
 * copying every piece of the body.
 */
export function createTransport(upstream: string, config: UpstreamConfig, logger: Logger): Transport {
  // Node's `ca` replaces the trusted set, so the configured CA is added to the defaults (getCACertificates: Node ≥ 22.15).
  const defaults = typeof tls.getCACertificates === 'function' ? tls.getCACertificates('default') : tls.rootCertificates;
  const ca = config.ca ? [...defaults, readFileSync(config.ca, 'utf8')] : undefined;
  const agents = {
    http: new HttpAgent({ keepAlive: true, scheduling: 'lifo' }),
    https: new HttpsAgent({ keepAlive: true, scheduling: 'lifo' }),
  };
  const lean = new Http1Client({ ca, rejectUnauthorized: !config.insecureSkipVerify });
  const { connect, response, idle, blob } = config.timeouts;
  const http: Got = got.extend({
    agent: agents,
    https: { rejectUnauthorized: !config.insecureSkipVerify, ...(ca ? { certificateAuthority: ca } : {}) },
    followRedirect: false,
    throwHttpErrors: false,
    decompress: false,
    retry: { limit: 0 },
    headers: { 'user-agent': 'tender' },
    hooks: { beforeError: [(error) => networkError(upstream, error)] },
  });

  /** Blob GETs (and the redirects and 401s on their way). */
  async function openLean(request: OpenRequest): Promise<Opened> {
    const { method, url, signal } = request;
    const started = Date.now();
    try {
      const res = await lean.request({
        method,
        url,
        headers: { 'user-agent': 'tender', ...request.headers },
        ...(signal ? { signal } : {}),
        timeouts: { connect, response, idle, total: blob },
      });
      logger.debug({ method, url: safeUrl(url), status: res.status, ms: Date.now() - started }, 'upstream response');
      return { status: res.status, headers: res.headers, url, method, body: leanErrors(upstream, method, url, res.body) };
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      const mapped = leanError(upstream, method, url, err);
      logger.debug({ method, url: safeUrl(url), ms: Date.now() - started, code: (err as Http1Error).code }, 'upstream request failed');
      throw mapped;
    }
  }

  function openGot(request: OpenRequest): Promise<Opened> {
    const { method, url, signal } = request;
    const started = Date.now();
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const stream = http.stream(url, {
      method,
      headers: request.headers,
      timeout: { connect, response, socket: idle },
    });
    // The signal destroys without an error of ours: got would wrap one in an error carrying the request headers.
    const onAbort = (): void => void stream.destroy();
    signal?.addEventListener('abort', onAbort, { once: true });
    const forget = (): void => signal?.removeEventListener('abort', onAbort);
    stream.once('close', forget);
    stream.once('end', forget);
    // Errors after the headers belong to whoever reads the body; this keeps an unread stream from crashing the process.
    stream.on('error', () => {});
    return new Promise<Opened>((resolve, reject) => {
      const onClose = (): void => reject(signal?.aborted ? (signal.reason as Error) : closedEarly(upstream, method, url));
      const onError = (err: Error): void => {
        stream.off('close', onClose);
        logger.debug({ method, url: safeUrl(url), ms: Date.now() - started, code: (err as UpstreamError).code }, 'upstream request failed');
        reject(err);
      };
      stream.once('error', onError);
      stream.once('close', onClose);
      stream.once('response', (res: { statusCode: number; headers: IncomingHttpHeaders }) => {
        stream.off('error', onError);
        stream.off('close', onClose);
        logger.debug({ method, url: safeUrl(url), status: res.statusCode, ms: Date.now() - started }, 'upstream response');
        resolve({ status: res.statusCode, headers: res.headers, url, method, body: fromReadable(stream) });
      });
    });
  }

  return {
    open(request) {
      return request.blob && request.method === 'GET' ? openLean(request) : openGot(request);
    },
    close() {
      agents.http.destroy();
      agents.https.destroy();
      lean.close();
    },
  };
}

/** Maps the lean client's failures to UNAVAILABLE with a cause safe to log. */
function leanError(upstream: string, method: string, url: URL, err: unknown): Error {
  if (err instanceof UpstreamError) return err;
  const e = err as { message?: string; code?: string };
  const cause = Object.assign(new Error(e.message ?? String(err)), { code: e.code });
  return new UpstreamError('UNAVAILABLE', upstream, `${describe(upstream, method, url)}: ${cause.message}`, { cause });
}

/** The lean client's body errors as UpstreamErrors. */
function leanErrors(upstream: string, method: string, url: URL, body: ByteSource): ByteSource {
  return {
    start: (sink) => body.start({ data: (v) => sink.data(v), end: () => sink.end(), error: (err) => sink.error(leanError(upstream, method, url, err)) }),
    resume: () => body.resume(),
    destroy: () => body.destroy(),
  };
}

/** Throws away a response body: small ones are drained so the connection can be reused. */
export function discard(res: Opened): void {
  const length = contentLength(res.headers);
  if (res.method === 'HEAD' || (length !== undefined && length <= DRAIN_LIMIT)) {
    let seen = 0;
    res.body.start({
      data(view) {
        seen += view.length;
        if (seen > DRAIN_LIMIT) res.body.destroy();
        return true;
      },
      end() {},
      error() {},
    });
  } else {
    res.body.destroy();
  }
}

/** Reads a whole body, refusing (INVALID) one larger than `cap` bytes without reading it all. */
export async function readBody(upstream: string, res: Opened, cap: number): Promise<Buffer> {
  const tooLarge = (): UpstreamError =>
    new UpstreamError('INVALID', upstream, `${describe(upstream, res.method, res.url)}: body exceeds ${cap} bytes`, { status: res.status });
  const declared = contentLength(res.headers);
  if (declared !== undefined && declared > cap) {
    res.body.destroy();
    throw tooLarge();
  }
  return collect(res.body, cap, tooLarge);
}

/** The UpstreamError for a status the caller did not expect. */
export function statusError(upstream: string, res: Opened): UpstreamError {
  const { status } = res;
  const where = `${describe(upstream, res.method, res.url)}: HTTP ${status}`;
  const retryAfter = status === 429 || status === 503 ? parseRetryAfter(header(res.headers, 'retry-after')) : undefined;
  const options = { status, ...(retryAfter !== undefined ? { retryAfter } : {}) };
  if (status === 404) return new UpstreamError('NOT_FOUND', upstream, where, options);
  if (status === 401) return new UpstreamError('UNAUTHORIZED', upstream, where, options);
  if (status === 403) return new UpstreamError('DENIED', upstream, where, options);
  if (status === 429) return new UpstreamError('TOO_MANY_REQUESTS', upstream, where, options);
  if (status >= 500 || status === 408) return new UpstreamError('UNAVAILABLE', upstream, where, options);
  return new UpstreamError('INVALID', upstream, where, options);
}

/** `upstream: METHOD origin/path`: no userinfo, no query (signed CDN URLs carry secrets there). */
export function describe(upstream: string, method: string, url: URL): string {
  return `upstream ${upstream}: ${method} ${safeUrl(url)}`;
}

export function safeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/** A header's value, with repeated headers joined as HTTP allows. */
export function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(', ') : value;
}

export function contentLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['content-length'];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** The `rel="next"` target of a Link header, resolved against the URL it came with. */
export function nextLink(value: string | undefined, base: URL): URL | undefined {
  if (!value) return undefined;
  for (const part of value.split(/,(?=\s*<)/)) {
    const m = /^\s*<([^>]*)>(.*)$/.exec(part);
    if (m && /;\s*rel\s*=\s*"?next"?\s*(;|$)/i.test(m[2]!)) return new URL(m[1]!, base);
  }
  return undefined;
}

/** Maps a got failure (network, timeout, TLS, short body) to UNAVAILABLE with a cause safe to log. */
function networkError(upstream: string, error: RequestError): Error {
  if (error instanceof UpstreamError) return error;
  const url = error.options?.url instanceof URL ? error.options.url : undefined;
  const method = error.options?.method ?? 'GET';
  const where = url ? describe(upstream, method, url) : `upstream ${upstream}`;
  // got's errors carry the request options (headers included): keep only the message and code.
  const cause = Object.assign(new Error(error.message), { code: error.code });
  return new UpstreamError('UNAVAILABLE', upstream, `${where}: ${error.message}`, { cause });
}

function closedEarly(upstream: string, method: string, url: URL): UpstreamError {
  return new UpstreamError('UNAVAILABLE', upstream, `${describe(upstream, method, url)}: connection closed before the response`);
}
