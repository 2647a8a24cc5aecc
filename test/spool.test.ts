import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Spool } from '../src/proxy/spool.ts';
import { requireDigest } from '../src/registry/digest.ts';

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Reads a stream fully, pausing `delayMs` after each chunk (a slow client). */
async function collect(stream: Readable, delayMs = 0): Promise<{ data: Buffer; error?: Error }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      if (delayMs) await sleep(delayMs);
    }
    return { data: Buffer.concat(chunks) };
  } catch (error) {
    return { data: Buffer.concat(chunks), error: error as Error };
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
    const filled = spool.fill(source, data.length);
    const fast = collect(spool.reader());
    const slow = collect(spool.reader(), 5);
    const fed = feed(source, data);
    await sleep(20);
    const late = collect(spool.reader());
    const ranged = collect(spool.reader({ start: 1000, end: 2_000_000 }));
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
    const filled = spool.fill(source, data.length);
    filled.catch(() => undefined);
    const readers = [collect(spool.reader()), collect(spool.reader(), 2), collect(spool.reader({ start: 0, end: data.length - 1 }))];
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
    const filled = spool.fill(source, data.length);
    filled.catch(() => undefined);
    const quitter = spool.reader();
    quitter.once('data', () => quitter.destroy());
    const stayer = collect(spool.reader());
    await feed(source, data.subarray(0, 100_000), 16 * 1024, false);
    source.end();
    await assert.rejects(filled, (err: Error & { code?: string }) => err.code === 'SIZE_MISMATCH');
    const r = await stayer;
    assert.ok(r.error);
    assert.ok(r.data.length < data.length);
    spool.release();
  }));

test('a source that errors midway fails the spool', () =>
  withDir(async (dir) => {
    const data = randomBytes(128 * 1024);
    const spool = await Spool.create(requireDigest(sha(data)), join(dir, 'd'));
    const source = new PassThrough();
    const filled = spool.fill(source, undefined);
    filled.catch(() => undefined);
    const reader = collect(spool.reader());
    source.write(data.subarray(0, 1000));
    await sleep(5);
    source.destroy(new Error('connection reset'));
    await assert.rejects(filled, (err: Error & { code?: string }) => err.code === 'SOURCE_FAILED');
    const r = await reader;
    assert.ok(r.error);
    assert.ok(r.data.length <= 999, 'unknown size: the last byte seen is held back');
    spool.release();
  }));
