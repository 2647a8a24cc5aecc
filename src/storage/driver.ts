import type { Readable } from 'node:stream';

/** What a driver knows of a stored object. */
export interface ObjectInfo {
  size: number;
  modified: Date;
}

/** A byte range, both ends inclusive (as in HTTP Range). */
export interface ByteRange {
  start: number;
  end: number;
}

/**
 * An open object for positional reads, offered by drivers whose objects are
 * local files: the fast path for serving blobs (fixed, reused buffers instead
 * of a stream of fresh ones). Close it when done.
 */
export interface ObjectHandle {
  readonly size: number;
  /** Reads up to `length` bytes at `position` into `buffer` at `offset`; returns the count (0 at the end). */
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<number>;
  close(): Promise<void>;
}

/** The same handle, running `after` once when it is closed (after the inner close, even if that fails). Reads go straight through. */
export function closingWith(handle: ObjectHandle, after: () => void): ObjectHandle {
  let closed = false;
  return {
    size: handle.size,
    read: handle.read.bind(handle),
    close: async () => {
      try {
        await handle.close();
      } finally {
        if (!closed) {
          closed = true;
          after();
        }
      }
    },
  };
}

/**
 * The storage driver seam. Drivers know only keys and bytes; the content
 * store above them knows the layout. Keys are '/'-separated relative paths of
 * safe characters (see `validateKey`); every write is atomic: a reader sees
 * the old object, the new object, or nothing, never a partial one.
 *
 * Every driver passes the shared contract suite in test/storage-contract.ts.
 */
export interface StorageDriver {
  readonly name: string;
  /** Size and modification time, or undefined when the object does not exist. */
  stat(key: string): Promise<ObjectInfo | undefined>;
  /** Reads a whole (small) object, or undefined when it does not exist. */
  get(key: string): Promise<Buffer | undefined>;
  /** Writes a whole object atomically, replacing any existing one. */
  put(key: string, data: Uint8Array | string): Promise<void>;
  /**
   * Opens a stream of the object (or of an inclusive byte range of it), or
   * undefined when it does not exist.
   */
  reader(key: string, range?: ByteRange): Promise<Readable | undefined>;
  /** Writes an object from a stream atomically; nothing is visible if the stream fails. */
  writeStream(key: string, source: Readable): Promise<ObjectInfo>;
  /**
   * Takes ownership of a complete local file and makes it the object at key
   * (a rename on the filesystem driver, an upload elsewhere). The local file
   * is gone afterwards whether or not this succeeds.
   */
  putFile(key: string, localPath: string): Promise<void>;
  /** Moves an object to a new key (replacing any object there). */
  move(from: string, to: string): Promise<void>;
  /** Deletes an object or, when key names a prefix, everything under it. Missing keys are not an error. */
  delete(key: string): Promise<void>;
  /** The names directly under a prefix (objects and sub-prefixes), sorted; empty when none. */
  list(prefix: string): Promise<string[]>;
  /** Opens the object for positional reads, where the backend has local files; undefined when it does not exist. */
  openHandle?(key: string): Promise<ObjectHandle | undefined>;
  /** A URL a client may be redirected to for the object, where the backend has one. */
  redirectUrl?(key: string): Promise<string | undefined>;
}

const keyPattern = /^[A-Za-z0-9._-]+(?:\/[A-Za-z0-9._-]+)*$/;

/**
 * Validates a storage key: relative, '/'-separated, no empty, '.' or '..'
 * segments. Throws a StorageKeyError otherwise. Drivers are wrapped so this
 * runs before any of their code.
 */
export function validateKey(key: string, allowEmpty = false): string {
  if (allowEmpty && key === '') return key;
  if (!keyPattern.test(key) || key.split('/').some((s) => s === '.' || s === '..')) {
    throw new StorageKeyError(key);
  }
  return key;
}

export class StorageKeyError extends Error {
  readonly code = 'ERR_STORAGE_KEY';
  constructor(key: string) {
    super(`invalid storage key: ${JSON.stringify(key)}`);
    this.name = 'StorageKeyError';
  }
}
