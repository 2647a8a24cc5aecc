import type { Context, Next } from 'koa';
import type { Logger } from 'pino';
import { RegistryError, errorBody } from '../registry/errors.ts';

/** Anything thrown that is not a RegistryError becomes UNKNOWN, its message kept out of the response. */
function normalise(err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const status = (err as { status?: unknown } | null)?.status;
  if (status === 400) return new RegistryError('UNSUPPORTED', { message: 'bad request', cause: err });
  return new RegistryError('UNKNOWN', { cause: err });
}

/**
 * The only writer of error bodies: `{"errors":[{code,message,detail}]}` with
 * the status from the error catalogue. Once headers are out, an error can
 * only abort the response, never append a body to it.
 */
export function errorMiddleware(logger: Logger) {
  return async function handleErrors(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
    } catch (thrown) {
      const err = normalise(thrown);
      if (ctx.headerSent || !ctx.writable) {
        logger.warn({ err: thrown, reqId: ctx.state.reqId }, 'response aborted after headers were sent');
        ctx.res.destroy();
        return;
      }
      if (err.status >= 500) logger.error({ err: thrown, reqId: ctx.state.reqId }, 'request failed');
      ctx.status = err.status;
      ctx.set(err.headers);
      ctx.type = 'application/json';
      ctx.body = errorBody([err]);
    }
  };
}
