import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { cacheResultOf, routeLabel, type Metrics, type RouteLabel } from '../metrics/metrics.ts';

/** What a handler tells the access log about its request. */
export interface AccessRecord {
  readonly reqId: string;
  /** Where the response came from: cache, revalidated, upstream, stale, inflight. */
  source: string | undefined;
  /** The metrics route label, when the handler knows it (else it is worked out from the path). */
  route?: RouteLabel;
}

/**
 * Starts tracking a request. Sets the X-Request-Id response header unless
 * `setHeader` is false (the caller then sends `record.reqId` itself).
 */
export type TrackRequest = (req: IncomingMessage, res: ServerResponse, setHeader?: boolean) => AccessRecord;

const idPattern = /^[\w.-]{1,64}$/;

/**
 * One structured line per request, written when the response closes, and a
 * request id (the client's X-Request-Id when sane, echoed back). The access
 * logger skips redaction: its fields are ours (method, path, status, ...) and
 * never carry credentials, and redaction would cost more than the rest of a
 * cached manifest response.
 */
export function createAccessLog(logger: Logger, metrics: Metrics): TrackRequest {
  const log = logger.child({}, { redact: { paths: [] } });
  const prefix = process.pid.toString(36);
  let counter = 0;
  return (req, res, setHeader = true) => {
    const started = performance.now();
    const given = req.headers['x-request-id'];
    const reqId = typeof given === 'string' && idPattern.test(given) ? given : `${prefix}-${(++counter).toString(36)}`;
    if (setHeader) res.setHeader('X-Request-Id', reqId);
    const record: AccessRecord = { reqId, source: undefined };
    const logging = log.isLevelEnabled('info');
    res.once('close', () => {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      const path = q === -1 ? url : url.slice(0, q);
      observe(metrics, req.method ?? 'GET', record.route ?? routeLabel(path), res, record.source, (performance.now() - started) / 1000);
      if (!logging) return;
      log.info(
        {
          reqId,
          method: req.method,
          path,
          status: res.statusCode,
          ms: Math.round((performance.now() - started) * 10) / 10,
          source: record.source,
          remote: req.socket.remoteAddress,
          aborted: !res.writableFinished,
        },
        'request',
      );
    });
    return record;
  };
}

type KnownSource = 'cache' | 'upstream' | 'stale' | 'revalidated' | 'inflight' | 'local';
const knownSources: ReadonlySet<string> = new Set<KnownSource>(['cache', 'upstream', 'stale', 'revalidated', 'inflight', 'local']);

/** Request, cache and byte counters for one finished request: the one place all requests pass. */
function observe(metrics: Metrics, method: string, route: RouteLabel, res: ServerResponse, source: string | undefined, seconds: number): void {
  metrics.httpRequest(route, method, res.statusCode, seconds);
  if (source === undefined || (route !== 'manifest' && route !== 'blob') || res.statusCode >= 400) return;
  if (!knownSources.has(source)) return;
  const s = source as KnownSource;
  metrics.cacheRequest(route, cacheResultOf(s));
  if (method !== 'GET' || !res.writableFinished) return;
  const length = Number(res.getHeader('content-length') ?? 0);
  metrics.served(s === 'local' ? 'local' : s === 'upstream' ? 'upstream' : 'cache', length);
}
