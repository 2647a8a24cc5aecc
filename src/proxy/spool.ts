import { open, unlink, type FileHandle } from 'node:fs/promises';
import { Writable, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

/** Chunks buffered before the writer waits for the disk (and batched into one writev). */
const writeBuffer = 1024 * 1024;

/**
 * A blob download in progress, written to a local temporary file while any
 * number of readers follow it, each at its own pace, through positional reads
 * that wait for the bytes to arrive. A reader never gets the final byte of
 * what it asked for before the whole blob has been verified against its
 * digest, so a corrupt or truncated download can only ever end a client's
 * response as an aborted one, never as a complete wrong one.
 */
export class Spool {
  readonly digest: Digest;
  readonly path: string;
  /** Total size once known (from the upstream's Content-Length, or at the end). */
  size: number | undefined;
  private written = 0;
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
   * Copies the source into the file, verifying as it goes. Resolves when the
   * blob is complete and verified; rejects (and wakes every reader with the
   * error) otherwise.
   */
  async fill(source: Readable, expectedSize: number | undefined): Promise<void> {
    this.size = expectedSize;
    const verifier = new DigestVerifier(this.digest);
    const append = async (chunks: Buffer[]): Promise<void> => {
      let length = 0;
      for (const c of chunks) length += c.length;
      if (expectedSize !== undefined && this.written + length > expectedSize) {
        throw new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} is longer than its ${expectedSize} bytes`);
      }
      for (const c of chunks) verifier.update(c);
      let pending = chunks;
      while (pending.length > 0) {
        const { bytesWritten } = await this.writeFd.writev(pending, this.written);
        this.written += bytesWritten;
        pending = afterBytes(pending, bytesWritten);
      }
      this.wake();
    };
    const sink = new Writable({
      highWaterMark: writeBuffer,
      write: (chunk: Buffer, _enc, cb) => append([chunk]).then(() => cb(), cb),
      writev: (entries, cb) => append(entries.map((e) => e.chunk as Buffer)).then(() => cb(), cb),
    });
    try {
      await pipeline(source, sink);
      if (expectedSize !== undefined && this.written !== expectedSize) {
        throw new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} ended after ${this.written} of ${expectedSize} bytes`);
      }
      const actual = verifier.finish();
      if (actual !== this.digest.value) {
        throw new SpoolError('DIGEST_MISMATCH', `blob ${this.digest.value} arrived with digest ${actual}`);
      }
      await this.writeFd.close();
      this.size = this.written;
      this.state = 'verified';
      this.wake();
    } catch (err) {
      source.destroy();
      const failure = err instanceof SpoolError ? err : new SpoolError('SOURCE_FAILED', `download of ${this.digest.value} failed`, err);
      this.fail(failure);
      throw failure;
    }
  }

  /** Marks the spool failed before or during fill (wakes readers with the error). */
  fail(err: Error): void {
    if (this.state !== 'running') return;
    this.state = 'failed';
    this.failure = err;
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
          const canEnd = verified ? limitEnd : Math.min(this.written, limitEnd - 1);
          if (position < canEnd) {
            const { bytesRead } = await this.readFd.read(buffer, offset, Math.min(length, canEnd - position), position);
            return bytesRead;
          }
          if (verified) throw new Error(`spool ${this.digest.value} ended at ${this.written}, before ${limitEnd}`);
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
