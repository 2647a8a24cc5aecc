import type { IncomingMessage } from 'node:http';
import type { Context, Next } from 'koa';
import type { CacheOutcome, EventInput } from '../notify/event.ts';
import type { Notifier } from '../notify/notifier.ts';

/** What a handler did, in the terms of a registry event; the request part is filled in here. */
export type RequestEvent = Omit<EventInput, 'request' | 'actor' | 'baseUrl'>;

/** How a response source reads in a pull event. */
export function cacheOutcome(source: string | undefined): CacheOutcome | undefined {
  switch (source) {
    case 'cache':
    case 'inflight':
      return 'hit';
    case 'revalidated':
      return 'revalidated';
    case 'upstream':
      return 'miss';
    case 'stale':
      return 'stale';
    default:
      return undefined;
  }
}

/** Emits an event for a request that succeeded (never blocks, never throws). */
export function emitEvent(notifier: Notifier, req: IncomingMessage, reqId: string, event: RequestEvent, user: string | undefined): void {
  if (!notifier.enabled) return;
  const secure = (req.socket as { encrypted?: boolean }).encrypted === true;
  const host = req.headers.host;
  notifier.emit({
    ...event,
    request: {
      id: reqId,
      method: req.method ?? 'GET',
      ...(req.socket.remoteAddress ? { addr: `${req.socket.remoteAddress}:${req.socket.remotePort}` } : {}),
      ...(host ? { host } : {}),
      ...(req.headers['user-agent'] ? { useragent: req.headers['user-agent'] } : {}),
    },
    ...(user ? { actor: { name: user } } : {}),
    ...(host ? { baseUrl: `${secure ? 'https' : 'http'}://${host}` } : {}),
  });
}

/**
 * Emits the event a handler recorded in ctx.state.event, once the response
 * succeeded: handlers say what happened, this one place says it to the
 * webhooks (pulls on GET only, as Distribution does).
 */
export function notifyMiddleware(notifier: Notifier) {
  return async function notifyRequest(ctx: Context, next: Next): Promise<void> {
    await next();
    const event = ctx.state.event as RequestEvent | undefined;
    if (!event || ctx.status >= 400) return;
    if (event.action === 'pull' && ctx.method !== 'GET') return;
    const user = ctx.state.principal?.kind === 'user' ? (ctx.state.principal.name as string) : undefined;
    emitEvent(notifier, ctx.req, ctx.state.reqId as string, event, user);
  };
}
