import type { Context } from 'koa';
import { RegistryError } from '../registry/errors.ts';

/** Reads a request body of at most `limit` bytes; MANIFEST_TOO_LARGE (413) beyond it. */
export async function readBody(ctx: Context, limit: number): Promise<Buffer> {
  const declared = Number(ctx.get('Content-Length') || NaN);
  if (declared > limit) {
    ctx.req.resume();
    throw new RegistryError('MANIFEST_TOO_LARGE', { detail: { limit, size: declared } });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of ctx.req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      ctx.req.resume();
      throw new RegistryError('MANIFEST_TOO_LARGE', { detail: { limit } });
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** Whether the request carries a body (Content-Length > 0 or chunked). */
export function hasBody(ctx: Context): boolean {
  const length = ctx.get('Content-Length');
  if (length !== '') return Number(length) > 0;
  return ctx.get('Transfer-Encoding') !== '';
}
