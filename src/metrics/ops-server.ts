import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../log.ts';
import type { Metrics } from './metrics.ts';
import { isReady, type ReadyReport } from './readiness.ts';

export { httpProbe, isReady, readinessChecks, type ReadyCheck, type ReadyReport } from './readiness.ts';

export interface OpsServerOptions {
  host: string;
  port: number;
  metrics: Metrics;
  /** The readiness checks, e.g. from `readinessChecks(...)`. */
  ready: () => Promise<ReadyReport>;
  logger: Logger;
}

export interface OpsServer {
  url: string;
  port: number;
  /** Stops listening; open scrapes get a moment to finish. */
  close(): Promise<void>;
}

/**
 * The operations listener, apart from the registry port so it can stay on a
 * private address: `GET /metrics` (Prometheus text), `GET /healthz` (200 while
 * the process serves), `GET /readyz` (200 when every critical check passes,
 * else 503; JSON report either way).
 */
export async function startOpsServer(opts: OpsServerOptions): Promise<OpsServer> {
  const log = opts.logger.child({ component: 'ops' });
  let wasReady: boolean | undefined;

  const routes: Record<string, (res: ServerResponse) => Promise<void>> = {
    '/metrics': async (res) => {
      const body = await opts.metrics.text();
      send(res, 200, opts.metrics.contentType, body);
    },
    '/healthz': async (res) => {
      send(res, 200, 'text/plain; charset=utf-8', 'ok');
    },
    '/readyz': async (res) => {
      let report: ReadyReport;
      try {
        report = await opts.ready();
      } catch (err) {
        log.error({ err }, 'readiness checks failed to run');
        report = { checks: [{ name: 'readiness', ok: false, critical: true, detail: 'checks failed to run', ms: 0 }] };
      }
      const ready = isReady(report);
      if (ready !== wasReady) {
        const failing = report.checks.filter((c) => !c.ok).map((c) => ({ name: c.name, critical: c.critical, detail: c.detail }));
        if (ready) log.info({ failing }, 'ready');
        else log.warn({ failing }, 'not ready');
        wasReady = ready;
      }
      send(res, ready ? 200 : 503, 'application/json', JSON.stringify({ ready, checks: report.checks }));
    },
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const route = routes[q === -1 ? url : url.slice(0, q)];
    if (!route) return send(res, 404, 'text/plain; charset=utf-8', 'not found');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return send(res, 405, 'text/plain; charset=utf-8', 'method not allowed');
    }
    route(res).catch((err: unknown) => {
      log.error({ err, path: url }, 'ops request failed');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'internal error');
      else res.destroy();
    });
  };

  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${host}:${port}`;
  log.info({ url }, 'ops endpoints listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
      // Scrapers keep connections alive; a scrape in progress gets one second.
      setTimeout(() => server.closeAllConnections(), 1000).unref();
    }));

  return { url, port, close };
}

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  res.setHeader('Cache-Control', 'no-store');
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
