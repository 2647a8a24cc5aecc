/**
 * A streaming reverse proxy in front of an upstream that records every request and can
 * inject faults, so tests can count upstream side effects ("one blob GET for 8 pulls")
 * and simulate a dead, slow, rate-limiting or lying upstream.
 */
import { Agent as HttpAgent, createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Transform, pipeline, type TransformCallback } from 'node:stream';

/** What to do to one request instead of (or on top of) passing it through. */
export type Fault =
  | { kind: 'offline' }
  | { kind: 'status'; status: number }
  | { kind: 'corrupt' }
  | { kind: 'truncate' }
  | { kind: 'delay'; ms: number };

/** One request as the proxy saw it; status 0 means no response was sent. */
export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  status: number;
  /** Body bytes sent to the client. */
  bytes: number;
  /** Path with the query string. */
  url: string;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
}

export interface RequestFilter {
  method?: string;
  path?: RegExp;
}

export interface CountingProxy {
  url: string;
  host: string;
  /** Completed (finished or aborted) requests, in completion order. */
  requests: RecordedRequest[];
  count(filter?: RequestFilter): number;
  bytesServed(filter?: RequestFilter): number;
  reset(): void;
  /** Decides a fault per request; undefined = pass through. */
  fault: ((req: { method: string; path: string; url: string }) => Fault | undefined) | undefined;
  stop(): Promise<void>;
}

const ERROR_CODES: Record<number, string> = {
  401: 'UNAUTHORIZED',
  403: 'DENIED',
  404: 'NAME_UNKNOWN',
  429: 'TOOMANYREQUESTS',
};

/** Starts the proxy on 127.0.0.1, port 0, forwarding to `target` (e.g. http://127.0.0.1:5000). */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const targetUrl = new URL(target);
  const secure = targetUrl.protocol === 'https:';
  const agent = secure ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
  const doRequest = secure ? httpsRequest : httpRequest;
  const server = createServer();
  let proxyOrigin = '';

  const matches = (r: RecordedRequest, f: RequestFilter = {}): boolean =>
    (f.method === undefined || r.method === f.method.toUpperCase()) && (f.path === undefined || f.path.test(r.path));

  const proxy: CountingProxy = {
    url: '',
    host: '',
    requests: [],
    count: (f) => proxy.requests.filter((r) => matches(r, f)).length,
    bytesServed: (f) => proxy.requests.filter((r) => matches(r, f)).reduce((n, r) => n + r.bytes, 0),
    reset: () => {
      proxy.requests.length = 0;
    },
    fault: undefined,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };

  const forward = (req: IncomingMessage, res: ServerResponse, fault: Fault | undefined, sent: { bytes: number }): void => {
    const headers = { ...req.headers, host: targetUrl.host };
    const upstream = doRequest(
      { protocol: targetUrl.protocol, hostname: targetUrl.hostname, port: targetUrl.port, method: req.method, path: req.url, headers, agent },
      (upRes) => {
        const outHeaders: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(upRes.headers)) if (v !== undefined) outHeaders[k] = v;
        const location = upRes.headers.location;
        if (location?.startsWith(targetUrl.origin)) outHeaders.location = proxyOrigin + location.slice(targetUrl.origin.length);
        res.writeHead(upRes.statusCode ?? 502, outHeaders);
        if (fault?.kind === 'truncate') {
          const length = Number(upRes.headers['content-length'] ?? NaN);
          pipeTruncated(upRes, res, Number.isFinite(length) ? Math.floor(length / 2) : undefined, sent);
        } else if (fault?.kind === 'corrupt') {
          pipeline(upRes, corrupter(), meter(sent), res, () => {});
        } else {
          pipeline(upRes, meter(sent), res, () => {});
        }
      },
    );
    upstream.on('error', () => {
      if (!res.headersSent) sendError(res, 502, 'UNAVAILABLE', 'counting proxy: upstream unreachable');
      else res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const path = url.split('?')[0] ?? url;
    const fault = proxy.fault?.({ method, path, url });
    const sent = { bytes: 0 };
    res.on('close', () => {
      const status = res.headersSent ? res.statusCode : 0;
      proxy.requests.push({ method, path, url, status, bytes: sent.bytes, ...(fault ? { fault: fault.kind } : {}) });
    });
    switch (fault?.kind) {
      case 'offline':
        req.socket.destroy();
        return;
      case 'status': {
        if (fault.status === 429) res.setHeader('Retry-After', '1');
        const code = ERROR_CODES[fault.status] ?? (fault.status >= 500 ? 'UNAVAILABLE' : 'UNKNOWN');
        sent.bytes = sendError(res, fault.status, code, `counting proxy: injected ${fault.status}`, method === 'HEAD');
        return;
      }
      case 'delay': {
        const timer = setTimeout(() => forward(req, res, fault, sent), fault.ms);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      default:
        forward(req, res, fault, sent);
    }
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  proxy.host = `127.0.0.1:${port}`;
  proxy.url = proxyOrigin = `http://${proxy.host}`;
  return proxy;
}

/** Answers with an OCI error body; returns the body bytes sent. */
function sendError(res: ServerResponse, status: number, code: string, message: string, headOnly = false): number {
  const body = JSON.stringify({ errors: [{ code, message }] });
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(headOnly ? undefined : body);
  return headOnly ? 0 : Buffer.byteLength(body);
}

/** Counts the bytes passing through into `sent.bytes`. */
function meter(sent: { bytes: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      sent.bytes += chunk.length;
      cb(null, chunk);
    },
  });
}

/** Flips one byte in every 1 KiB (starting with the first), keeping the length. */
function corrupter(): Transform {
  let offset = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const out = Buffer.from(chunk);
      for (let i = (1024 - (offset % 1024)) % 1024; i < out.length; i += 1024) out[i] = (out[i] ?? 0) ^ 0xff;
      offset += chunk.length;
      cb(null, out);
    },
  });
}

/**
 * Sends the headers, then `limit` body bytes (half the first chunk when the length is
 * unknown), then closes the connection so the client sees a short body.
 */
function pipeTruncated(upRes: IncomingMessage, res: ServerResponse, limit: number | undefined, sent: { bytes: number }): void {
  res.flushHeaders();
  let done = false;
  const cut = (): void => {
    done = true;
    upRes.destroy();
    // end() flushes what was written (headers, partial body) before the FIN; destroy() could drop it.
    res.socket?.end();
    setTimeout(() => res.socket?.destroy(), 1000).unref();
  };
  if (limit === 0) return cut();
  upRes.on('data', (chunk: Buffer) => {
    if (done) return;
    const max = limit ?? Math.floor(chunk.length / 2);
    const take = chunk.subarray(0, max - sent.bytes);
    sent.bytes += take.length;
    const flowing = res.write(take);
    if (sent.bytes >= max) return cut();
    if (!flowing) {
      upRes.pause();
      res.once('drain', () => upRes.resume());
    }
  });
  upRes.on('end', () => {
    if (!done) cut();
  });
  res.on('close', () => upRes.destroy());
}
