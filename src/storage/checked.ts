import { validateKey, type ByteRange, type StorageDriver } from './driver.ts';

/** A move whose source object does not exist. */
export class StorageNotFoundError extends Error {
  readonly code = 'ERR_STORAGE_NOT_FOUND';
  readonly key: string;
  constructor(key: string, options?: { cause?: unknown }) {
    super(`no such object: ${JSON.stringify(key)}`, options);
    this.name = 'StorageNotFoundError';
    this.key = key;
  }
}

/**
 * The one wrapper every driver is used through (as in Distribution's
 * `base.go`): it validates every key and range before the driver sees them,
 * and turns a backend's not-found errors into the interface's answers
 * (undefined, [], a no-op, or StorageNotFoundError), so drivers stay naive.
 */
export function checkedDriver(driver: StorageDriver): StorageDriver {
  const checked: StorageDriver = {
    name: driver.name,
    stat: async (key) => orMissing(driver.stat(validateKey(key))),
    get: async (key) => orMissing(driver.get(validateKey(key))),
    put: async (key, data) => driver.put(validateKey(key), data),
    reader: async (key, range) => orMissing(driver.reader(validateKey(key), range && validRange(range))),
    writeStream: async (key, source) => driver.writeStream(validateKey(key), source),
    putFile: async (key, localPath) => driver.putFile(validateKey(key), localPath),
    move: async (from, to) => {
      validateKey(from);
      validateKey(to);
      try {
        await driver.move(from, to);
      } catch (err) {
        throw isNotFound(err) ? new StorageNotFoundError(from, { cause: err }) : err;
      }
    },
    delete: async (key) => {
      await orMissing(driver.delete(validateKey(key)));
    },
    list: async (prefix) => (await orMissing(driver.list(validateKey(prefix, true)))) ?? [],
  };
  const { redirectUrl, openHandle } = driver;
  if (openHandle) checked.openHandle = async (key) => orMissing(openHandle.call(driver, validateKey(key)));
  if (redirectUrl) checked.redirectUrl = async (key) => orMissing(redirectUrl.call(driver, validateKey(key)));
  return checked;
}

function validRange(range: ByteRange): ByteRange {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new RangeError(`invalid byte range ${start}-${end}`);
  }
  return range;
}

async function orMissing<T>(op: Promise<T>): Promise<T | undefined> {
  try {
    return await op;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Not-found as the filesystem (ENOENT, ENOTDIR) and object stores (NoSuchKey, 404) report it. */
function isNotFound(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const { code, name, $metadata } = err as Error & { code?: unknown; $metadata?: { httpStatusCode?: number } };
  return (
    code === 'ENOENT' ||
    code === 'ENOTDIR' ||
    code === 'NoSuchKey' ||
    name === 'NoSuchKey' ||
    name === 'NotFound' ||
    $metadata?.httpStatusCode === 404
  );
}
