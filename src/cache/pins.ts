import type { BlobBody } from '../proxy/blobs.ts';
import { closingWith } from '../storage/driver.ts';

/**
 * Reference counts of blobs in use: being read by a client or written by a
 * download. Eviction never deletes a pinned blob. On the filesystem an open
 * file keeps reading after it is unlinked, but object stores have no such
 * grace, and a count keeps the rule the same everywhere.
 */
export class Pins {
  private readonly counts = new Map<string, number>();

  /** Pins the digest; the returned function releases this pin (calling it again does nothing). */
  pin(digest: string): () => void {
    this.counts.set(digest, (this.counts.get(digest) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.counts.get(digest) ?? 1) - 1;
      if (left > 0) this.counts.set(digest, left);
      else this.counts.delete(digest);
    };
  }

  isPinned(digest: string): boolean {
    return this.counts.has(digest);
  }

  /** Distinct digests pinned now. */
  get size(): number {
    return this.counts.size;
  }
}

/**
 * The same blob body, releasing `release` once its bytes are done with: when
 * the handle is closed (send-handle closes it on every path) or the stream
 * closes (ends, fails or is destroyed).
 */
export function releasedWith(body: BlobBody, release: () => void): BlobBody {
  if (body.bytes.kind === 'stream') {
    const stream = body.bytes.stream;
    if (stream.closed || stream.destroyed) release();
    else stream.once('close', release);
    return body;
  }
  return { ...body, bytes: { kind: 'handle', handle: closingWith(body.bytes.handle, release) } };
}
