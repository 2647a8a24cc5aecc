import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { ObjectHandle } from '../src/storage/driver.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spool } from '../src/proxy/spool.ts';
import { fromReadable } from '../src/upstream/body.ts';
import { requireDigest } from '../src/registry/digest.ts';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/**
 * Reads [start, end) through a handle as the HTTP layer does (a reused
 * buffer, short reads), pausing `delayMs` after each read (a slow client).
 * `quitAfter` closes the handle after that many reads (a client going away).
 */
async function collect(
  handle: ObjectHandle,
  opts: { start?: number; end?: number; delayMs?: number; quitAfter?: number } = {},
): Promise<{ data: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  let pos = opts.start ?? 0;
  const end = opts.end ?? handle.size;
  let reads = 0;
  try {
    while (pos < end) {
      const n = await handle.read(buf, 0, Math.min(buf.length, end - pos), pos);
      if (n === 0) break;
      chunks.push(Buffer.from(buf.subarray(0, n)));
      pos += n;
      if (opts.delayMs) await sleep(opts.delayMs);
      if (opts.quitAfter !== undefined && ++reads >= opts.quitAfter) break;
    }
    return { data: Buffer.concat(chunks) };
  } catch (error) {
    return { data: Buffer.concat(chunks), error: error as Error };
  } finally {
    await handle.close();
  }
}

/** Feeds the source in chunks with pauses, like a network download. */
async function feed(source: PassThrough, data: Buffer, chunk = 64 * 1024, end = true): Promise<void> {
  for (let i = 0; i < data.length; i += chunk) {
    source.write(data.subarray(i, i + chunk));
    if (i % (chunk * 8) === 0) await sleep(1);
  }
  if (end) source.end();
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'tender-spool-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('readers at different paces all get the exact bytes, and may join late', () =>
  withDir(async (dir) => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'a'));
    const source = new PassThrough();
    const filled = spool.fill(fromReadable(source), data.length);
    const fast = collect(spool.handle());
    const slow = collect(spool.handle(), { delayMs: 5 });
    const fed = feed(source, data);
    await sleep(20);
    const late = collect(spool.handle());
    const ranged = collect(spool.handle(2_000_001), { start: 1000 });
    await Promise.all([filled, fed]);
    for (const r of await Promise.all([fast, slow, late])) {
      assert.equal(r.error, undefined);
      assert.ok(r.data.equals(data));
    }
    const r = await ranged;
    assert.ok(r.data.equals(data.subarray(1000, 2_000_001)));
    assert.ok(spool.verified);
    assert.ok((await readFile(spool.path)).equals(data));
    spool.release();
  }));

test('corrupt bytes: every reader fails and none ever receives the whole length', () =>
  withDir(async (dir) => {
    const data = randomBytes(512 * 1024);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'b'));
    const source = new PassThrough();
    const filled = spool.fill(fromReadable(source), data.length);
    filled.catch(() => undefined);
    const readers = [collect(spool.handle()), collect(spool.handle(), { delayMs: 2 }), collect(spool.handle(data.length))];
    const corrupt = Buffer.from(data);
    const at = corrupt.length - 10;
    corrupt.writeUInt8(corrupt.readUInt8(at) ^ 0xff, at);
    await feed(source, corrupt);
    await assert.rejects(filled, (err: Error & { code?: string }) => err.code === 'DIGEST_MISMATCH');
    for (const r of await Promise.all(readers)) {
      assert.ok(r.error, 'reader must fail');
      assert.ok(r.data.length < data.length, 'the final byte is never delivered unverified');
    }
    await assert.rejects(stat(spool.path), 'temporary file removed');
    spool.release();
  }));

test('truncated download fails readers; a reader that goes away does not stop the download', () =>
  withDir(async (dir) => {
    const data = randomBytes(256 * 1024);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'c'));
    const source = new PassThrough();
    const filled = spool.fill(fromReadable(source), data.length);
    filled.catch(() => undefined);
    const quitter = collect(spool.handle(), { quitAfter: 1 });
    const stayer = collect(spool.handle());
    await feed(source, data.subarray(0, 100_000), 16 * 1024, false);
    source.end();
    await assert.rejects(filled, (err: Error & { code?: string }) => err.code === 'SIZE_MISMATCH');
    const r = await stayer;
    assert.ok(r.error);
    assert.ok(r.data.length < data.length);
    assert.equal((await quitter).error, undefined, 'the reader that left saw no error');
    spool.release();
  }));

test('a source that errors midway fails the spool', () =>
  withDir(async (dir) => {
    const data = randomBytes(128 * 1024);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'd'));
    const source = new PassThrough();
    const filled = spool.fill(fromReadable(source), undefined);
    filled.catch(() => undefined);
    const reader = collect(spool.handle(data.length));
    source.write(data.subarray(0, 1000));
    await sleep(5);
    source.destroy(new Error('connection reset'));
    await assert.rejects(filled, (err: Error & { code?: string }) => err.code === 'SOURCE_FAILED');
    const r = await reader;
    assert.ok(r.error);
    assert.ok(r.data.length <= 1000);
    spool.release();
  }));

test('a large blob read after verification comes from the file; once the last reference goes the spool is closed', () =>
  withDir(async (dir) => {
    // Larger than the memory the spool keeps (slabs are dropped at verification).
    const data = randomBytes(12 * 1024 * 1024 + 5);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'e'));
    const source = new PassThrough();
    const filled = spool.fill(fromReadable(source), data.length);
    const early = spool.handle();
    await Promise.all([filled, feed(source, data, 256 * 1024)]);
    assert.ok(spool.verified);
    const whole = await collect(early);
    assert.equal(whole.error, undefined);
    assert.ok(whole.data.equals(data));
    const tail = await collect(spool.handle(), { start: data.length - 3_000_000 });
    assert.ok(tail.data.equals(data.subarray(data.length - 3_000_000)));
    assert.ok(spool.open);
    spool.release();
    assert.equal(spool.open, false);
    assert.throws(() => spool.handle(), /closed/);
  }));
