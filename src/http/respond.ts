import type { Context } from 'koa';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';

/** The headers of a blob or manifest response, set in one place. */
export function setContentHeaders(
  ctx: Context,
  h: { digest: string; mediaType: string; length: number; immutable?: boolean },
): void {
  ctx.set('Docker-Content-Digest', h.digest);
  ctx.set('ETag', `"${h.digest}"`);
  ctx.set('Content-Type', h.mediaType);
  ctx.set('Content-Length', String(h.length));
  if (h.immutable) ctx.set('Cache-Control', 'max-age=31536000, immutable');
}

/**
 * Streams a body straight to the socket, bypassing Koa's body handling so that
 * a failure after the headers went out destroys the connection (the client
 * sees a truncated response, never a complete wrong one).
 */
export async function sendStream(ctx: Context, stream: Readable): Promise<void> {
  ctx.respond = false;
  const res = ctx.res;
  res.statusCode = ctx.status;
  if (ctx.method === 'HEAD') {
    stream.destroy();
    res.end();
    return;
  }
  try {
    await pipeline(stream, res);
  } catch (err) {
    res.destroy();
    // A client that went away is not an error of ours.
    if ((err as { code?: string }).code !== 'ERR_STREAM_PREMATURE_CLOSE') throw err;
  }
}
