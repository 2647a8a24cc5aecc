import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';

/** What a handler tells the access log about its request. */
export interface AccessRecord {
  readonly reqId: string;
  /** Where the response came from: cache, revalidated, upstream, stale, inflight. */
  source: string | undefined;
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
export function createAccessLog(logger: Logger): TrackRequest {
  const log = logger.child({}, { redact: { paths: [] } });
  const prefix = process.pid.toString(36);
  let counter = 0;
  return (req, res, setHeader = true) => {
    const started = performance.now();
    const given = req.headers['x-request-id'];
    const reqId = typeof given === 'string' && idPattern.test(given) ? given : `${prefix}-${(++counter).toString(36)}`;
    if (setHeader) res.setHeader('X-Request-Id', reqId);
    const record: AccessRecord = { reqId, source: undefined };
    if (!log.isLevelEnabled('info')) return record;
    res.once('close', () => {
      const url = req.url ?? '';
      const q = url.indexOf('?');
      log.info(
        {
          reqId,
          method: req.method,
          path: q === -1 ? url : url.slice(0, q),
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
