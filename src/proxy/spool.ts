import { open, unlink, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { DigestVerifier, type Digest } from '../registry/digest.ts';
import type { ObjectHandle } from '../storage/driver.ts';

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
/** Recent bytes kept in memory so readers that keep up never wait for the disk. */
const tailBytes = 4 * 1024 * 1024;

interface TailChunk {
  start: number;
  buf: Buffer;
}

/**
 * A blob download in progress. Bytes are handed to readers from memory as
 * they arrive (a short tail of recent chunks) and written to a local
 * temporary file in the background, so readers that fall behind read the
 * file, each at its own pace, through positional reads that wait for bytes
 * to arrive. A reader never gets the final byte of what it asked for before
 * the whole blob has been verified against its digest, so a corrupt or
 * truncated download can only ever end a client's response as an aborted
 * one, never as a complete wrong one.
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
  private tail: TailChunk[] = [];
  private tailSize = 0;
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

  get bytesWritten(): number {
    return this.written;
  }

  /**
   * Takes the source's bytes, verifying as they come, and writes them to the
   * file. Resolves when the blob is complete, on disk and verified; rejects
   * (and wakes every reader with the error) otherwise.
   */
  async fill(source: Readable, expectedSize: number | undefined): Promise<void> {
    this.size = expectedSize;
    const verifier = new DigestVerifier(this.digest);
    try {
      await new Promise<void>((resolve, reject) => {
        let queue: Buffer[] = [];
        let queued = 0;
        let writing = false;
        let ended = false;
        let failed = false;
        const fail = (err: unknown): void => {
          if (failed) return;
          failed = true;
          reject(err);
        };
        const flush = async (): Promise<void> => {
          writing = true;
          try {
            while (queue.length > 0 && !failed) {
              let batch = queue;
              queue = [];
              queued = 0;
              if (source.isPaused() && !ended) source.resume();
              while (batch.length > 0) {
                const { bytesWritten } = await this.writeFd.writev(batch, this.written);
                this.written += bytesWritten;
                batch = afterBytes(batch, bytesWritten);
              }
              this.trimTail();
            }
          } catch (err) {
            fail(err);
          } finally {
            writing = false;
          }
          if (ended && queue.length === 0) resolve();
        };
        source.on('data', (chunk: Buffer) => {
          if (failed) return;
          if (expectedSize !== undefined && this.received + chunk.length > expectedSize) {
            fail(new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} is longer than its ${expectedSize} bytes`));
            return;
          }
          verifier.update(chunk);
          this.tail.push({ start: this.received, buf: chunk });
          this.tailSize += chunk.length;
          this.received += chunk.length;
          queue.push(chunk);
          queued += chunk.length;
          this.wake();
          if (queued >= maxUnwritten) source.pause();
          if (!writing) void flush();
        });
        source.once('end', () => {
          ended = true;
          if (!writing && queue.length === 0) resolve();
        });
        source.once('error', fail);
        source.once('close', () => {
          if (!ended) fail(new Error('source closed before its end'));
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
      this.wake();
    } catch (err) {
      source.destroy();
      const failure = err instanceof SpoolError ? err : new SpoolError('SOURCE_FAILED', `download of ${this.digest.value} failed`, err);
      this.fail(failure);
      throw failure;
    }
  }

  /** Drops the oldest in-memory chunks that are on disk, keeping about `tailBytes`. */
  private trimTail(): void {
    while (this.tail.length > 1 && this.tailSize - this.tail[0]!.buf.length >= tailBytes) {
      const first = this.tail[0]!;
      if (first.start + first.buf.length > this.written) break;
      this.tail.shift();
      this.tailSize -= first.buf.length;
    }
  }

  /** Copies bytes at `position` from the in-memory tail, or returns -1 when they are not there. */
  private fromTail(buffer: Buffer, offset: number, length: number, position: number): number {
    const tail = this.tail;
    if (tail.length === 0 || position < tail[0]!.start) return -1;
    let copied = 0;
    for (const { start, buf } of tail) {
      const end = start + buf.length;
      if (end <= position + copied) continue;
      if (copied === length) break;
      const from = position + copied - start;
      copied += buf.copy(buffer, offset + copied, from, Math.min(buf.length, from + length - copied));
    }
    return copied;
  }

  /** Marks the spool failed before or during fill (wakes readers with the error). */
  fail(err: Error): void {
    if (this.state !== 'running') return;
    this.state = 'failed';
    this.failure = err;
    this.tail = [];
    this.tailSize = 0;
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

/** The chunks left after the first `n` bytes of them were written. */
function afterBytes(chunks: Buffer[], n: number): Buffer[] {
  let skip = n;
  let i = 0;
  while (i < chunks.length && skip >= chunks[i]!.length) skip -= chunks[i++]!.length;
  if (i === chunks.length) return [];
  return [chunks[i]!.subarray(skip), ...chunks.slice(i + 1)];
}
