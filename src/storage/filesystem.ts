import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { StorageKeyError, validateKey, type ByteRange, type ObjectHandle, type ObjectInfo, type StorageDriver } from './driver.ts';

/** Where temporary objects live, under the root; never a visible key. */
const tmpDirName = '_tmp';
/** Blobs are served from here: large reads keep syscalls and stream ticks down. */
const readChunk = 1024 * 1024;
/** A concurrent delete may prune a parent directory between our mkdir and rename. */
const renameAttempts = 5;

/**
 * Stores objects as files under a root directory. Writes go to a uniquely
 * named file in `<root>/_tmp` and are renamed into place, so readers see the
 * old object, the new one, or nothing. Empty directories are pruned after a
 * delete or move so that listings match an object store's (no empty prefixes).
 *
 * There is no fsync: a rename is atomic for running processes, but after a
 * power loss a just-written file may be empty or short, so content must be
 * verifiable (blobs are, by digest).
 */
export class FilesystemDriver implements StorageDriver {
  readonly name = 'filesystem';
  readonly root: string;
  readonly #tmpDir: string;
  #tmpReady: Promise<unknown> | undefined;

  constructor(options: { root: string }) {
    this.root = path.resolve(options.root);
    this.#tmpDir = path.join(this.root, tmpDirName);
  }

  /** The file behind a key, for callers that serve files directly (e.g. sendfile). */
  localPath(key: string): string {
    validateKey(key);
    if (key === tmpDirName || key.startsWith(`${tmpDirName}/`)) throw new StorageKeyError(key);
    const resolved = path.resolve(this.root, ...key.split('/'));
    if (!resolved.startsWith(this.root + path.sep)) throw new StorageKeyError(key);
    return resolved;
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    const st = await orMissing(fsp.stat(this.localPath(key)));
    return st?.isFile() ? { size: st.size, modified: st.mtime } : undefined;
  }

  async get(key: string): Promise<Buffer | undefined> {
    return orMissing(fsp.readFile(this.localPath(key)));
  }

  async put(key: string, data: Uint8Array | string): Promise<void> {
    const dest = this.localPath(key);
    const tmp = await this.#tmpFile();
    try {
      await fsp.writeFile(tmp, data, { flag: 'wx' });
      await renameInto(tmp, dest);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  async openHandle(key: string): Promise<ObjectHandle | undefined> {
    const handle = await orMissing(fsp.open(this.localPath(key), 'r'));
    if (!handle) return undefined;
    let size: number;
    try {
      const st = await handle.stat();
      if (!st.isFile()) {
        await handle.close();
        return undefined;
      }
      size = st.size;
    } catch (err) {
      await handle.close();
      throw err;
    }
    return {
      size,
      read: async (buffer, offset, length, position) => (await handle.read(buffer, offset, length, position)).bytesRead,
      close: () => handle.close(),
    };
  }

  async reader(key: string, range?: ByteRange): Promise<Readable | undefined> {
    const handle = await orMissing(fsp.open(this.localPath(key), 'r'));
    if (!handle) return undefined;
    try {
      // open() succeeds on a directory (a prefix), which is not an object.
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        return undefined;
      }
    } catch (err) {
      await handle.close();
      throw err;
    }
    return handle.createReadStream({ start: range?.start, end: range?.end, highWaterMark: readChunk });
  }

  async writeStream(key: string, source: Readable): Promise<ObjectInfo> {
    const dest = this.localPath(key);
    const tmp = await this.#tmpFile();
    try {
      await pipeline(source, createWriteStream(tmp, { flags: 'wx', highWaterMark: readChunk }));
      const st = await fsp.stat(tmp);
      await renameInto(tmp, dest);
      return { size: st.size, modified: st.mtime };
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
  }

  async putFile(key: string, localPath: string): Promise<void> {
    const dest = this.localPath(key);
    try {
      await renameInto(localPath, dest);
    } catch (err) {
      if (errorCode(err) !== 'EXDEV') {
        await fsp.rm(localPath, { force: true });
        throw err;
      }
      const tmp = await this.#tmpFile();
      try {
        await fsp.copyFile(localPath, tmp);
        await renameInto(tmp, dest);
      } catch (copyErr) {
        await fsp.rm(tmp, { force: true });
        throw copyErr;
      } finally {
        await fsp.rm(localPath, { force: true });
      }
    }
  }

  async move(from: string, to: string): Promise<void> {
    const source = this.localPath(from);
    await renameInto(source, this.localPath(to));
    await this.#prune(path.dirname(source));
  }

  async delete(key: string): Promise<void> {
    const target = this.localPath(key);
    await fsp.rm(target, { recursive: true, force: true });
    await this.#prune(path.dirname(target));
  }

  async list(prefix: string): Promise<string[]> {
    const dir = prefix === '' ? this.root : this.localPath(prefix);
    const names = (await orMissing(fsp.readdir(dir))) ?? [];
    return (prefix === '' ? names.filter((n) => n !== tmpDirName) : names).sort();
  }

  /** A fresh temporary path under the root (same filesystem, so rename is atomic). */
  async #tmpFile(): Promise<string> {
    this.#tmpReady ??= fsp.mkdir(this.#tmpDir, { recursive: true }).catch((err: unknown) => {
      this.#tmpReady = undefined;
      throw err;
    });
    await this.#tmpReady;
    return path.join(this.#tmpDir, randomUUID());
  }

  /** Removes empty directories from dir up to (not including) the root. */
  async #prune(dir: string): Promise<void> {
    for (let d = dir; d.startsWith(this.root + path.sep); d = path.dirname(d)) {
      try {
        await fsp.rmdir(d);
      } catch {
        return; // not empty (or already gone, or raced by a writer): stop here
      }
    }
  }
}

/** Renames src to dest, creating dest's parent directories as needed. */
async function renameInto(src: string, dest: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fsp.rename(src, dest);
      return;
    } catch (err) {
      if (errorCode(err) !== 'ENOENT' || attempt === renameAttempts) throw err;
      if ((await orMissing(fsp.lstat(src))) === undefined) throw err;
      await fsp.mkdir(path.dirname(dest), { recursive: true });
    }
  }
}

/** Resolves to undefined when the path (or a parent) does not exist or is the wrong kind. */
async function orMissing<T>(op: Promise<T>): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    const code = errorCode(err);
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') return undefined;
    throw err;
  }
}

function errorCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
