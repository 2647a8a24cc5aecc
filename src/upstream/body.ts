import { Readable } from 'node:stream';

/** Where a body's bytes go. */
export interface ByteSink {
  /**
   * A piece of the body. The view may be a window on a buffer that is reused
   * as soon as the call returns: copy what must be kept. Returning false asks
   * the source to pause until `resume()`; pieces already read may still come.
   */
  data(view: Buffer): boolean;
  end(): void;
  /** The body failed; no other call follows. */
  error(err: Error): void;
}

/**
 * A response body delivered in place rather than as a stream of freshly
 * allocated chunks: the upstream blob path hands each socket read straight
 * to its consumer (hash, spool), which is most of what receiving costs.
 */
export interface ByteSource {
  /** Starts delivery to the sink; call once. Exactly one of end and error follows. */
  start(sink: ByteSink): void;
  resume(): void;
  /** Stops delivery and frees the connection; the sink hears nothing more. */
  destroy(): void;
}

/** A ByteSource over a Readable of Buffers (got's responses, tests). */
export function fromReadable(stream: Readable): ByteSource {
  let done = false;
  return {
    start(sink) {
      const settle = (fn: () => void): void => {
        if (done) return;
        done = true;
        fn();
      };
      stream.on('data', (chunk: Buffer) => {
        if (!done && !sink.data(chunk)) stream.pause();
      });
      stream.once('end', () => settle(() => sink.end()));
      stream.once('error', (err) => settle(() => sink.error(err)));
      stream.once('close', () => settle(() => sink.error(new Error('body closed before its end'))));
      stream.resume();
    },
    resume() {
      if (!done) stream.resume();
    },
    destroy() {
      done = true;
      stream.destroy();
    },
  };
}

/** A Readable over a ByteSource, copying each piece (for consumers that want a stream). */
export function toReadable(source: ByteSource): Readable {
  let started = false;
  const readable = new Readable({
    read() {
      if (!started) {
        started = true;
        source.start({
          data: (view) => readable.push(Buffer.from(view)),
          end: () => readable.push(null),
          error: (err) => readable.destroy(err),
        });
      } else {
        source.resume();
      }
    },
    destroy(err, callback) {
      source.destroy();
      callback(err);
    },
  });
  return readable;
}

/** Calls `onSettled` once when the body ends, fails or is destroyed. */
export function onSettled(source: ByteSource, onSettled: () => void): ByteSource {
  let settled = false;
  const settle = (): void => {
    if (settled) return;
    settled = true;
    onSettled();
  };
  return {
    start(sink) {
      source.start({
        data: (view) => sink.data(view),
        end: () => {
          settle();
          sink.end();
        },
        error: (err) => {
          settle();
          sink.error(err);
        },
      });
    },
    resume: () => source.resume(),
    destroy: () => {
      settle();
      source.destroy();
    },
  };
}

/** Reads a whole body into memory, failing (and stopping the source) once it exceeds `cap` bytes. */
export function collect(source: ByteSource, cap: number, tooLarge: () => Error): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let failed = false;
    source.start({
      data(view) {
        if (failed) return true;
        total += view.length;
        if (total > cap) {
          failed = true;
          source.destroy();
          reject(tooLarge());
          return true;
        }
        chunks.push(Buffer.from(view));
        return true;
      },
      end: () => resolve(Buffer.concat(chunks, total)),
      error: reject,
    });
  });
}
