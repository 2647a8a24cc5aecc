/**
 * Writes image layers without any tool: a minimal ustar archive holding one regular file
 * of random bytes, optionally gzip-compressed, digested while streaming to disk.
 */
import { createHash, randomFillSync, randomUUID, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

const BLOCK = 512;
const CHUNK = 1024 * 1024;

export const MEDIA_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip';
export const MEDIA_LAYER_TAR = 'application/vnd.oci.image.layer.v1.tar';

/** A layer blob written into an OCI layout. */
export interface WrittenLayer {
  digest: string;
  size: number;
  mediaType: string;
  /** sha256 of the uncompressed tar, for the config's rootfs.diff_ids. */
  diffId: string;
}

/** A 512-byte ustar header for a regular file. */
export function tarHeader(name: string, size: number, mtime = Math.floor(Date.now() / 1000)): Buffer {
  const h = Buffer.alloc(BLOCK);
  const field = (offset: number, length: number, value: string): void => {
    h.write(value, offset, length, 'ascii');
  };
  const octal = (offset: number, length: number, value: number): void => {
    field(offset, length, value.toString(8).padStart(length - 1, '0') + '\0');
  };
  if (Buffer.byteLength(name) > 100) throw new Error(`tar name too long: ${name}`);
  field(0, 100, name);
  octal(100, 8, 0o644); // mode
  octal(108, 8, 0); // uid
  octal(116, 8, 0); // gid
  octal(124, 12, size);
  octal(136, 12, mtime);
  field(148, 8, '        '); // checksum placeholder: spaces while summing
  field(156, 1, '0'); // regular file
  field(257, 6, 'ustar\0');
  field(263, 2, '00');
  field(265, 32, 'root');
  field(297, 32, 'root');
  let sum = 0;
  for (const b of h) sum += b;
  field(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

/** The bytes of a tar archive with one file of `size` random bytes, in 1 MiB chunks. */
export async function* randomTar(name: string, size: number): AsyncGenerator<Buffer> {
  yield tarHeader(name, size);
  for (let left = size; left > 0; left -= CHUNK) {
    yield randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, left)));
  }
  const pad = (BLOCK - (size % BLOCK)) % BLOCK;
  yield Buffer.alloc(pad + 2 * BLOCK); // padding and the end-of-archive marker
}

/** The size of the tar archive `randomTar(name, size)` produces. */
export function tarSize(size: number): number {
  return BLOCK + Math.ceil(size / BLOCK) * BLOCK + 2 * BLOCK;
}

/** Writes one layer into `blobsDir` (an OCI layout's blobs/sha256) and returns its descriptor. */
export async function writeRandomLayer(blobsDir: string, size: number, compress: boolean): Promise<WrittenLayer> {
  const diffHash = createHash('sha256');
  const blobHash = createHash('sha256');
  const blobBytes = { n: 0 };
  const tmp = join(blobsDir, `.tmp-${randomUUID()}`);
  const source = Readable.from(randomTar(`tender-${randomUUID()}.bin`, size));
  if (compress) {
    await pipeline(source, tap(diffHash), createGzip({ level: 1 }), tap(blobHash, blobBytes), createWriteStream(tmp));
  } else {
    await pipeline(source, tap(diffHash, blobBytes), createWriteStream(tmp));
  }
  const diffId = `sha256:${diffHash.digest('hex')}`;
  const digest = compress ? `sha256:${blobHash.digest('hex')}` : diffId;
  await rename(tmp, join(blobsDir, digest.slice('sha256:'.length)));
  return { digest, size: blobBytes.n, mediaType: compress ? MEDIA_LAYER_GZIP : MEDIA_LAYER_TAR, diffId };
}

/** A pass-through stream that feeds a hash and counts bytes. */
function tap(hash: Hash, counter?: { n: number }): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      if (counter) counter.n += chunk.length;
      cb(null, chunk);
    },
  });
}
