import Koa from 'koa';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import { errorMiddleware } from './errors.ts';
import { v2Router, type V2Services } from './v2.ts';

let requestCounter = 0;
const idPrefix = process.pid.toString(36);

/** Request ids (the client's X-Request-Id when sane) and one structured access-log line per request. */
function accessLog(logger: Logger) {
  return async function logRequest(ctx: Context, next: Next): Promise<void> {
    const started = performance.now();
    const given = ctx.get('X-Request-Id');
    const reqId = /^[\w.-]{1,64}$/.test(given) ? given : `${idPrefix}-${(++requestCounter).toString(36)}`;
    ctx.state.reqId = reqId;
    ctx.set('X-Request-Id', reqId);
    ctx.res.once('close', () => {
      logger.info(
        {
          reqId,
          method: ctx.method,
          path: ctx.path,
          status: ctx.res.statusCode,
          ms: Math.round((performance.now() - started) * 10) / 10,
          source: ctx.state.source,
          remote: ctx.request.ip,
          aborted: !ctx.res.writableFinished,
        },
        'request',
      );
    });
    await next();
  };
}

/** The Koa application: logging, errors, the v2 API, and OCI errors for everything else. */
export function createApp(services: V2Services, logger: Logger): Koa {
  const app = new Koa();
  app.silent = true;
  const router = v2Router(services);
  app.use(accessLog(logger));
  app.use(errorMiddleware(logger));
  app.use(async (ctx, next) => {
    ctx.set('Docker-Distribution-API-Version', 'registry/2.0');
    await next();
  });
  app.use(router.routes());
  app.use(() => {
    throw new RegistryError('NOT_FOUND');
  });
  return app;
}
