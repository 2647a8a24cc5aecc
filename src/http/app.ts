import Koa from 'koa';
import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { RegistryError } from '../registry/errors.ts';
import type { TrackRequest } from './access-log.ts';
import { authenticate } from './access.ts';
import { errorMiddleware } from './errors.ts';
import { notifyMiddleware } from './events.ts';
import { v2Router, type V2Services } from './v2.ts';

/** Tracks each request in the access log and exposes its record to handlers as ctx.state.access. */
function accessLog(track: TrackRequest) {
  return async function logRequest(ctx: Context, next: Next): Promise<void> {
    const access = track(ctx.req, ctx.res);
    ctx.state.access = access;
    ctx.state.reqId = access.reqId;
    await next();
  };
}

/** The Koa application: logging, errors, the v2 API, and OCI errors for everything else. */
export function createApp(services: V2Services, logger: Logger, track: TrackRequest): Koa {
  const app = new Koa();
  app.silent = true;
  const router = v2Router(services);
  app.use(accessLog(track));
  app.use(errorMiddleware(logger));
  app.use(async (ctx, next) => {
    ctx.set('Docker-Distribution-API-Version', 'registry/2.0');
    await next();
  });
  app.use(authenticate(services.access));
  app.use(notifyMiddleware(services.notifier));
  app.use(router.routes());
  app.use(() => {
    throw new RegistryError('NOT_FOUND');
  });
  return app;
}
