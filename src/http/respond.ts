import type { Context } from 'koa';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import type { BlobBody } from '../proxy/blobs.ts';
import { sendHandle } from './send-handle.ts';

export interface ContentDescription {
  digest: string;
  mediaType: string;
  length: number;
  /** Addressed by digest: may be cached forever. */
  immutable?: boolean;
}

/** The headers of a blob or manifest response, built in one place. */
export function contentHeaders(h: ContentDescription): Record<string, string> {
  const headers: Record<string, string> = {
    'Docker-Content-Digest': h.digest,
    ETag: `"${h.digest}"`,
    'Content-Type': h.mediaType,
    'Content-Length': String(h.length),
  };
  if (h.immutable) headers['Cache-Control'] = 'max-age=31536000, immutable';
  return headers;
}

/** The headers of a manifest response. */
export function manifestHeaders(m: { digest: string; mediaType: string; size: number }, byDigest: boolean): Record<string, string> {
  return contentHeaders({ digest: m.digest, mediaType: m.mediaType, length: m.size, immutable: byDigest });
}

export function setContentHeaders(ctx: Context, h: ContentDescription): void {
  ctx.set(contentHeaders(h));
}

/** Sends a blob body: through the two-buffer file path when it is an open handle, else as a stream. */
export async function sendBlob(ctx: Context, blob: BlobBody): Promise<void> {
  if (blob.bytes.kind === 'stream') return sendStream(ctx, blob.bytes.stream);
  const { handle } = blob.bytes;
  ctx.respond = false;
  ctx.res.statusCode = ctx.status;
  if (ctx.method === 'HEAD') {
    await handle.close();
    ctx.res.end();
    return;
  }
  const start = blob.range?.start ?? 0;
  const end = blob.range ? blob.range.end + 1 : blob.size;
  await sendHandle(ctx.res, handle, start, end);
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
