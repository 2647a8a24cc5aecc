import { open, unlink, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { DigestVerifier, type Digest } from '../registry/digest.ts';

const readSize = 1024 * 1024;

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

/**
 * A blob download in progress, written to a local temporary file while any
 * number of readers follow it, each at its own pace. A reader never delivers
 * its final byte before the whole blob has been verified against its digest,
 * so a corrupt or truncated download can only ever end a client's response
 * as an aborted one, never as a complete wrong one.
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
   * error) otherwise. Never throws synchronously.
   */
  async fill(source: Readable, expectedSize: number | undefined): Promise<void> {
    this.size = expectedSize;
    const verifier = new DigestVerifier(this.digest);
    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        if (expectedSize !== undefined && this.written + chunk.length > expectedSize) {
          throw new SpoolError('SIZE_MISMATCH', `blob ${this.digest.value} is longer than its ${expectedSize} bytes`);
        }
        verifier.update(chunk);
        let offset = 0;
        while (offset < chunk.length) {
          const { bytesWritten } = await this.writeFd.write(chunk, offset, chunk.length - offset, this.written);
          offset += bytesWritten;
          this.written += bytesWritten;
        }
        this.wake();
      }
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
   * A stream of the blob (or of an inclusive byte range of it) that follows
   * the download. Holds a reference until it ends or is destroyed.
   */
  reader(range?: { start: number; end: number }): Readable {
    this.refs++;
    let pos = range?.start ?? 0;
    let reading = false;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.release();
    };
    const stream: Readable = new Readable({
      highWaterMark: readSize,
      read: () => {
        if (reading) return;
        reading = true;
        void pump().finally(() => {
          reading = false;
        });
      },
      destroy: (err, cb) => {
        release();
        cb(err);
      },
    });
    const pump = async (): Promise<void> => {
      while (!stream.destroyed) {
        if (this.state === 'failed') {
          stream.destroy(this.failure);
          return;
        }
        const verified = this.state === 'verified';
        // Exclusive end of what this reader wants, when known.
        const wantEnd = range ? range.end + 1 : this.size;
        if (verified && pos >= (wantEnd ?? this.written)) {
          stream.push(null);
          release();
          return;
        }
        let canEnd = Math.min(this.written, wantEnd ?? Infinity);
        // Hold back this reader's final byte until the whole blob is verified.
        if (!verified && (wantEnd === undefined || canEnd >= wantEnd)) canEnd = Math.min(canEnd, (wantEnd ?? this.written) - 1);
        if (pos < canEnd) {
          const length = Math.min(readSize, canEnd - pos);
          const buf = Buffer.allocUnsafe(length);
          const { bytesRead } = await this.readFd.read(buf, 0, length, pos);
          if (stream.destroyed) return;
          if (bytesRead === 0) {
            stream.destroy(new Error(`spool ${this.digest.value} read past its end`));
            return;
          }
          pos += bytesRead;
          if (!stream.push(bytesRead === length ? buf : buf.subarray(0, bytesRead))) return;
        } else {
          await new Promise<void>((resolve) => this.waiters.push(resolve));
        }
      }
    };
    return stream;
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
