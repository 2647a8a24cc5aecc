import { open, unlink, type FileHandle } from 'node:fs/promises';
import { DigestVerifier, type Digest } from '../registry/digest.ts';
import type { ObjectHandle } from '../storage/driver.ts';
import type { ByteSource } from '../upstream/body.ts';

/** Why a spool failed, as a stable code. */
export type SpoolFailure = 'DIGEST_MISMATCH' | 'SIZE_MISMATCH' | 'SOURCE_FAILED';

export class SpoolError extends Error {
  readonly code: SpoolFailure;
  constructor(code: SpoolFailure, message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'SpoolError';
    this.code = code;
  }
}

/** Bytes received but not yet on disk before the source is paused. */
const maxUnwritten = 4 * 1024 * 1024;
/** Recent bytes kept in memory, once on disk, so readers that keep up never wait for the disk. */
const tailBytes = 4 * 1024 * 1024;
/** Received bytes are copied into slabs of this size, written to the file a slab at a time. */
const slabSize = 1024 * 1024;
/** Idle slabs kept for the next download (16 MiB at most). */
const maxPooledSlabs = 16;
const slabPool: Buffer[] = [];

/** A slab of the blob: bytes [start, start + used) of it. */
interface Slab {
  start: number;
  buf: Buffer;
  used: number;
}

function takeSlab(): Buffer {
  return slabPool.pop() ?? Buffer.allocUnsafeSlow(slabSize);
}

function giveSlab(buf: Buffer): void {
  if (slabPool.length < maxPooledSlabs) slabPool.push(buf);
}

/**
 * A blob download in progress. Bytes are handed to readers from memory as
 * they arrive (the slabs they are copied into) and written to a local
 * temporary file a slab at a time, so readers that fall behind read the
 * file, each at its own pace, through positional reads that wait for bytes
 * to arrive. A reader never gets the final byte of what it asked for before
 * the whole blob has been verified against its digest, so a corrupt or
 * truncated download can only ever end a client's response as an aborted
 * one, never as a complete wrong one. Slabs are pooled: a download allocates
 * nothing per piece received.
 */
export class Spool {
  readonly digest: Digest;
  readonly path: string;
  /** Total size once known (from the upstream's Content-Length, or at the end). */
  size: number | undefined;
  /** Bytes received (in memory or on disk). */
  private received = 0;
  /** Bytes on disk. */
  private written = 0;
  /** The blob's bytes still in memory, in order: written ones (the tail readers follow) then unwritten ones. */
  private slabs: Slab[] = [];
  private state: 'running' | 'verified' | 'failed' = 'running';
  private failure: Error | undefined;
  private waiters: Array<() => void> = [];
  private refs = 1;
  private readonly writeFd: FileHandle;
  private readonly readFd: FileHandle;

  private constructor(digest: Digest, path: string, writeFd: FileHandle, readFd: FileHandle) {
    this.digest = digest;
    this.path = path;
    this.writeFd = writeFd;
    this.readFd = readFd;
  }

  /** Creates the temporary file. The creator holds one reference; `release()` it when done. */
  static async create(digest: Digest, path: string): Promise<Spool> {
    const writeFd = await open(path, 'wx');
    const readFd = await open(path, 'r');
    return new Spool(digest, path, writeFd, readFd);
  }

  get verified(): boolean {
    return this.state === 'verified';
  }

  /** False once the last reference went: the download is over and the blob, if verified, is in the store. */
  get open(): boolean {
    return this.refs > 0;
  }

  get bytesWritten(): number {
    return this.written;
  }

  /**
   * Takes the source's bytes, verifying as they come, and writes them to the
   * file. Resolves when the blob is complete, on disk and verified; rejects
   * (and wakes every reader with the error) otherwise.
   */
  async fill(source: ByteSource, expectedSize: number | undefined): Promise<void> {
    this.size = expectedSize;
    const verifier = new DigestVerifier(this.digest);
    try {
      await new Promise<void>((resolve, reject) => {
        let writing = false;
        let ended = false;
        let failed = false;
        let paused = false;
        const fail = (err: unknown): void => {
          if (failed) return;
          failed = true;
          reject(err);
        };
        /** Writes whole slabs (and, at the end, the last partial one) until nothing is left to write. */
        const flush = async (): Promise<void> => {
          writing = true;
          try {
            while (!failed) {
              const pieces = this.unwritten(ended);
              if (pieces.length === 0) break;
              const { bytesWritten } = await this.writeFd.writev(pieces, this.written);
              this.written += bytesWritten;
              this.trimTail();
              if (paused && this.received - this.written < maxUnwritten) {
                paused = false;
                source.resume();
              }
            }
          } catch (err) {
            fail(err);
          } finally {
            writing = false;
          }
          if (ended && !failed && this.written === this.received) resolve();
        };
        source.start({
          data: (view) => {
            if (failed) return false;
            if (expectedSize !== undefined && this.received + view.length > expectedSize) {
              fail(new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} is longer than its ${expectedSize} bytes`));
              source.destroy();
              return false;
            }
            verifier.update(view);
            this.append(view);
            this.wake();
            if (!writing) void flush();
            if (this.received - this.written >= maxUnwritten) paused = true;
            return !paused;
          },
          end: () => {
            ended = true;
            if (!writing) void flush();
          },
          error: fail,
        });
      });
      if (expectedSize !== undefined && this.received !== expectedSize) {
        throw new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} ended after ${this.received} of ${expectedSize} bytes`);
      }
      const actual = verifier.finish();
      if (actual !== this.digest.value) {
        throw new SpoolError('DIGEST_MISMATCH', `blob ${this.digest.value} arrived with digest ${actual}`);
      }
      await this.writeFd.close();
      this.size = this.received;
      this.state = 'verified';
      // Every byte is on disk and verified: readers go to the file (the page cache) from here.
      this.dropSlabs();
      this.wake();
    } catch (err) {
      source.destroy();
      const failure = err instanceof SpoolError ? err : new SpoolError('SOURCE_FAILED', `download of ${this.digest.value} failed`, err);
      this.fail(failure);
      throw failure;
    }
  }

  /** Copies a received piece into slabs. */
  private append(view: Buffer): void {
    let from = 0;
    while (from < view.length) {
      let last = this.slabs.at(-1);
      if (!last || last.used === slabSize) {
        last = { start: this.received, buf: takeSlab(), used: 0 };
        this.slabs.push(last);
      }
      const n = view.copy(last.buf, last.used, from);
      last.used += n;
      from += n;
      this.received += n;
    }
  }

  /** The bytes to write next: full slabs past `written`, and the last partial one when `all`. */
  private unwritten(all: boolean): Buffer[] {
    const out: Buffer[] = [];
    for (const slab of this.slabs) {
      const end = slab.start + slab.used;
      if (end <= this.written) continue;
      if (slab.used < slabSize && !all) break;
      out.push(slab.buf.subarray(Math.max(0, this.written - slab.start), slab.used));
    }
    return out;
  }

  /** Frees the oldest slabs that are on disk, keeping about `tailBytes` of them. */
  private trimTail(): void {
    while (this.slabs.length > 1) {
      const first = this.slabs[0]!;
      if (first.start + first.used > this.written) break;
      const onDisk = this.written - first.start;
      if (onDisk - first.used < tailBytes) break;
      this.slabs.shift();
      giveSlab(first.buf);
    }
  }

  private dropSlabs(): void {
    for (const slab of this.slabs) giveSlab(slab.buf);
    this.slabs = [];
  }

  /** Copies bytes at `position` from the slabs in memory, or returns -1 when they are not there. */
  private fromTail(buffer: Buffer, offset: number, length: number, position: number): number {
    const slabs = this.slabs;
    if (slabs.length === 0 || position < slabs[0]!.start) return -1;
    let copied = 0;
    for (const { start, buf, used } of slabs) {
      if (copied === length) break;
      const end = start + used;
      if (end <= position + copied) continue;
      const from = position + copied - start;
      copied += buf.copy(buffer, offset + copied, from, Math.min(used, from + length - copied));
    }
    return copied;
  }

  /** Marks the spool failed before or during fill (wakes readers with the error). */
  fail(err: Error): void {
    if (this.state !== 'running') return;
    this.state = 'failed';
    this.failure = err;
    this.dropSlabs();
    this.wake();
    void this.writeFd.close().catch(() => undefined);
    void unlink(this.path).catch(() => undefined);
  }

  /**
   * A handle for one reader that will read up to `end` (exclusive; the blob's
   * size when omitted, which must then be known). Reads wait for bytes to
   * arrive, return short counts with what is there, hold back the byte before
   * `end` until the blob is verified, and throw if the download fails. The
   * handle holds a reference until closed.
   */
  handle(end?: number): ObjectHandle {
    const limitEnd = end ?? this.size;
    if (limitEnd === undefined) throw new Error('spool handle needs a known end');
    if (this.refs === 0) throw new Error('spool is closed');
    this.refs++;
    let closed = false;
    return {
      size: this.size ?? limitEnd,
      read: async (buffer, offset, length, position) => {
        while (true) {
          if (closed) throw new Error('spool handle is closed');
          if (this.state === 'failed') throw this.failure;
          if (position >= limitEnd) return 0;
          const verified = this.state === 'verified';
          const canEnd = verified ? limitEnd : Math.min(this.received, limitEnd - 1);
          if (position < canEnd) {
            const want = Math.min(length, canEnd - position);
            const copied = this.fromTail(buffer, offset, want, position);
            if (copied > 0) return copied;
            const { bytesRead } = await this.readFd.read(buffer, offset, Math.min(want, this.written - position), position);
            return bytesRead;
          }
          if (verified) throw new Error(`spool ${this.digest.value} ended at ${this.received}, before ${limitEnd}`);
          await new Promise<void>((resolve) => this.waiters.push(resolve));
        }
      },
      close: async () => {
        if (closed) return;
        closed = true;
        this.release();
      },
    };
  }

  /** Drops a reference; the read handle closes when the last one goes. */
  release(): void {
    this.refs--;
    if (this.refs === 0) void this.readFd.close().catch(() => undefined);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
