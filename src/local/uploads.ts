import { createHash, randomUUID, type Hash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { requireDigest } from '../registry/digest.ts';
import { RegistryError } from '../registry/errors.ts';
import type { LocalRoute } from '../routing.ts';
import type { ContentStore } from '../store/content-store.ts';

/** What is kept on disk beside an upload's bytes, so a session survives a restart. */
interface UploadState {
  repo: string;
  name: string;
  startedAt: number;
}

/** The incremental digest of an upload's bytes so far, while this process saw them all. */
interface RunningHash {
  hash: Hash;
  offset: number;
}

const idPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * Blob upload sessions of local repositories (POST, PATCH, PUT, GET, DELETE
 * of /blobs/uploads/). Bytes are appended to a file in the uploads folder
 * with a small state file beside it; both live on disk, so an upload resumes
 * after a restart. Completion verifies the digest (incrementally when this
 * process saw every byte, else by reading the file back), then commits the
 * file into the store atomically: a partial blob is never visible.
 */
export class Uploads {
  private readonly dir: string;
  private readonly store: ContentStore;
  private readonly logger: Logger;
  private readonly hashes = new Map<string, RunningHash>();
  /** One operation at a time per upload (PATCHes of one session are serialised). */
  private readonly locks = new Map<string, Promise<unknown>>();

  constructor(options: { dir: string; store: ContentStore; logger: Logger }) {
    this.dir = options.dir;
    this.store = options.store;
    this.logger = options.logger;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  private dataPath(id: string): string {
    return join(this.dir, `${id}.data`);
  }

  private statePath(id: string): string {
    return join(this.dir, `${id}.json`);
  }

  private async locked<T>(id: string, work: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }

  /** Starts a session; returns its id. */
  async start(route: LocalRoute): Promise<string> {
    const id = randomUUID();
    const state: UploadState = { repo: route.repo, name: route.name, startedAt: Date.now() };
    await (await open(this.dataPath(id), 'wx')).close();
    await writeFileAtomic(this.statePath(id), JSON.stringify(state));
    this.hashes.set(id, { hash: createHash('sha256'), offset: 0 });
    return id;
  }

  /** The session's bytes so far; BLOB_UPLOAD_UNKNOWN when it does not exist in this repository. */
  async offset(route: LocalRoute, id: string): Promise<number> {
    await this.state(route, id);
    try {
      return (await stat(this.dataPath(id))).size;
    } catch (err) {
      // Completed (its bytes committed) or cancelled between the two reads, or a crash between those steps.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { id } });
      throw err;
    }
  }

  private async state(route: LocalRoute, id: string): Promise<UploadState> {
    if (!idPattern.test(id)) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { id } });
    let state: UploadState;
    try {
      state = JSON.parse(await readFile(this.statePath(id), 'utf8')) as UploadState;
    } catch {
      throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { id } });
    }
    if (state.repo !== route.repo) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', { detail: { id } });
    return state;
  }

  /**
   * Appends a chunk. `start` (from Content-Range) must equal the current
   * offset; otherwise RANGE_INVALID (416) with the range held so far.
   * Returns the new offset.
   */
  async append(route: LocalRoute, id: string, body: Readable, start: number | undefined): Promise<number> {
    return this.locked(id, async () => {
      const offset = await this.offset(route, id);
      if (start !== undefined && start !== offset) {
        body.resume();
        throw new RegistryError('RANGE_INVALID', {
          message: `chunk starts at ${start}, but the upload holds ${offset} bytes`,
          headers: rangeHeaders(route, id, offset),
        });
      }
      return this.write(id, body, offset);
    });
  }

  private async write(id: string, body: Readable, offset: number): Promise<number> {
    let running = this.hashes.get(id);
    if (running && running.offset !== offset) {
      this.hashes.delete(id);
      running = undefined;
    }
    const fh = await open(this.dataPath(id), 'r+');
    let position = offset;
    try {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        let done = 0;
        while (done < chunk.length) {
          const { bytesWritten } = await fh.write(chunk, done, chunk.length - done, position);
          done += bytesWritten;
          position += bytesWritten;
        }
        running?.hash.update(chunk);
      }
    } catch (err) {
      // A broken request leaves the bytes it delivered; the running digest no longer matches them.
      this.hashes.delete(id);
      throw new RegistryError('BLOB_UPLOAD_INVALID', { message: 'upload body ended early', cause: err });
    } finally {
      await fh.close();
    }
    if (running) running.offset = position;
    return position;
  }

  /**
   * Completes a session with the final chunk (possibly empty): verifies the
   * digest, commits the blob, links it into the repository. The session is
   * gone afterwards, whether or not the digest matched.
   */
  async complete(route: LocalRoute, id: string, digest: string, body: Readable | undefined): Promise<void> {
    const expected = requireDigest(digest);
    await this.locked(id, async () => {
      const offset = await this.offset(route, id);
      const size = body ? await this.write(id, body, offset) : offset;
      const running = this.hashes.get(id);
      const actual =
        running && running.offset === size && expected.algorithm === 'sha256'
          ? `sha256:${running.hash.digest('hex')}`
          : await digestOfFile(this.dataPath(id), expected.algorithm);
      if (actual !== expected.value) {
        await this.remove(id);
        throw new RegistryError('DIGEST_INVALID', { detail: { expected: expected.value, actual } });
      }
      await this.store.commitBlobFile(expected.value, this.dataPath(id));
      await this.store.linkLayer(route.repo, expected.value);
      await this.remove(id);
      this.logger.debug({ repository: route.name, digest: expected.value, size }, 'blob pushed');
    });
  }

  async cancel(route: LocalRoute, id: string): Promise<void> {
    await this.locked(id, async () => {
      await this.state(route, id);
      await this.remove(id);
    });
  }

  private async remove(id: string): Promise<void> {
    this.hashes.delete(id);
    await rm(this.statePath(id), { force: true });
    await rm(this.dataPath(id), { force: true });
  }

  /** Removes sessions untouched for longer than maxAgeMs (and stray files); returns how many. */
  async sweep(maxAgeMs: number, now = Date.now()): Promise<number> {
    let removed = 0;
    const seen = new Set<string>();
    for (const name of await readdir(this.dir)) {
      const id = name.replace(/\.(data|json)$/, '');
      if (seen.has(id)) continue;
      seen.add(id);
      if (!idPattern.test(id)) {
        // A state file's temporary copy left by a crash mid-write.
        const age = await stat(join(this.dir, name)).then((s) => now - s.mtimeMs, () => 0);
        if (age > maxAgeMs) await rm(join(this.dir, name), { force: true });
        continue;
      }
      const touched = await Promise.all([this.statePath(id), this.dataPath(id)].map((p) => stat(p).then((s) => s.mtimeMs, () => 0)));
      if (now - Math.max(...touched) > maxAgeMs) {
        await this.locked(id, () => this.remove(id));
        removed++;
      }
    }
    if (removed) this.logger.info({ removed }, 'abandoned uploads removed');
    return removed;
  }
}

/** Location, Range and Docker-Upload-UUID of a session holding `offset` bytes. */
export function rangeHeaders(route: LocalRoute, id: string, offset: number): Record<string, string> {
  return {
    Location: `/v2/${route.name}/blobs/uploads/${id}`,
    Range: `0-${Math.max(0, offset - 1)}`,
    'Docker-Upload-UUID': id,
  };
}

async function digestOfFile(path: string, algorithm: 'sha256' | 'sha512'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
  return `${algorithm}:${hash.digest('hex')}`;
}

async function writeFileAtomic(path: string, data: string): Promise<void> {
  const tmp = `${path}.${randomUUID()}.tmp`;
  const fh = await open(tmp, 'wx');
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
}
