import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat as fsStat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { StorageDriver } from '../src/storage/driver.ts';

/**
 * The contract every storage driver passes, used through `checkedDriver`
 * (as the application uses it). A driver's test file calls this with a
 * factory giving a fresh, empty driver per test.
 */
export function storageContract(
  name: string,
  make: () => Promise<{ driver: StorageDriver; cleanup(): Promise<void> }>,
): void {
  void describe(`storage contract: ${name}`, () => {
    let driver: StorageDriver;
    let cleanup: () => Promise<void>;

    beforeEach(async () => {
      ({ driver, cleanup } = await make());
    });
    afterEach(async () => {
      await cleanup();
    });

    void test('put, get and stat round trip', async () => {
      const before = Date.now();
      await driver.put('a/b/c.txt', 'hello');
      await driver.put('sha256/ab/ab01-_.x', new Uint8Array([0, 1, 2, 255]));
      assert.equal((await driver.get('a/b/c.txt'))?.toString(), 'hello');
      assert.deepEqual(await driver.get('sha256/ab/ab01-_.x'), Buffer.from([0, 1, 2, 255]));
      const info = await driver.stat('a/b/c.txt');
      assert.ok(info);
      assert.equal(info.size, 5);
      assert.ok(info.modified instanceof Date);
      assert.ok(Math.abs(info.modified.getTime() - before) < 60_000, 'modified is about now');
      await driver.put('empty', '');
      assert.equal((await driver.stat('empty'))?.size, 0);
      assert.equal((await driver.get('empty'))?.length, 0);
    });

    void test('overwrite replaces the whole object', async () => {
      await driver.put('k', 'a longer first value');
      await driver.put('k', 'short');
      assert.equal((await driver.get('k'))?.toString(), 'short');
      assert.equal((await driver.stat('k'))?.size, 5);
      await driver.writeStream('k', Readable.from([Buffer.from('streamed')]));
      assert.equal((await driver.get('k'))?.toString(), 'streamed');
    });

    void test('missing keys are not errors', async () => {
      assert.equal(await driver.stat('no/such/key'), undefined);
      assert.equal(await driver.get('no/such/key'), undefined);
      assert.equal(await driver.reader('no/such/key'), undefined);
      assert.equal(await driver.reader('no/such/key', { start: 0, end: 1 }), undefined);
      assert.deepEqual(await driver.list('no/such'), []);
      await driver.delete('no/such/key');
      // A prefix is not an object, and an object is not a prefix.
      await driver.put('p/q', 'x');
      assert.equal(await driver.stat('p'), undefined);
      assert.equal(await driver.get('p'), undefined);
      assert.equal(await driver.reader('p'), undefined);
      assert.equal(await driver.get('p/q/r'), undefined);
      assert.deepEqual(await driver.list('p/q'), []);
      await assert.rejects(driver.move('no/such/key', 'x'), { code: 'ERR_STORAGE_NOT_FOUND' });
      assert.deepEqual(await driver.list(''), ['p'], 'a failed move creates nothing');
    });

    void test('reader streams the whole object or an inclusive range', async () => {
      const data = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      await driver.put('r', data);
      const read = async (range?: { start: number; end: number }) => {
        const stream = await driver.reader('r', range);
        assert.ok(stream);
        return drain(stream);
      };
      assert.deepEqual(await read(), data);
      assert.deepEqual(await read({ start: 0, end: 999 }), data);
      assert.deepEqual(await read({ start: 0, end: 0 }), data.subarray(0, 1));
      assert.deepEqual(await read({ start: 100, end: 199 }), data.subarray(100, 200));
      assert.deepEqual(await read({ start: 999, end: 999 }), data.subarray(999));
      assert.deepEqual(await read({ start: 990, end: 5000 }), data.subarray(990), 'end past the object is clamped');
      await assert.rejects(driver.reader('r', { start: 5, end: 2 }), RangeError);
      await assert.rejects(driver.reader('r', { start: -1, end: 2 }), RangeError);
    });

    void test('openHandle, where offered, reads positionally and reports the size', async (t) => {
      if (!driver.openHandle) {
        t.diagnostic(`${name} offers no openHandle: blobs are served from reader()`);
        assert.equal(driver.openHandle, undefined);
        return;
      }
      const data = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 253));
      await driver.put('h/obj', data);
      const handle = await driver.openHandle('h/obj');
      assert.ok(handle);
      try {
        assert.equal(handle.size, data.length);
        const buf = Buffer.alloc(100);
        assert.equal(await handle.read(buf, 0, 100, 4950), 50, 'short read at the end');
        assert.deepEqual(buf.subarray(0, 50), data.subarray(4950));
        assert.equal(await handle.read(buf, 10, 20, 7), 20);
        assert.deepEqual(buf.subarray(10, 30), data.subarray(7, 27));
        assert.equal(await handle.read(buf, 0, 10, 5000), 0, 'nothing past the end');
      } finally {
        await handle.close();
      }
      assert.equal(await driver.openHandle('h/missing'), undefined);
      assert.equal(await driver.openHandle('h'), undefined, 'a prefix is not an object');
      await assert.rejects(driver.openHandle('../escape'));
    });

    void test('a failed writeStream leaves nothing visible and keeps the old object', async () => {
      await driver.put('w/old', 'old value');
      const failing = () =>
        Readable.from(
          (async function* () {
            yield Buffer.alloc(64 * 1024, 1);
            yield Buffer.alloc(64 * 1024, 2);
            throw new Error('upstream went away');
          })(),
        );
      await assert.rejects(driver.writeStream('w/old', failing()), /upstream went away/);
      await assert.rejects(driver.writeStream('w/new', failing()), /upstream went away/);
      assert.equal((await driver.get('w/old'))?.toString(), 'old value');
      assert.equal(await driver.stat('w/new'), undefined);
      assert.deepEqual(await driver.list('w'), ['old']);
    });

    void test('writeStream reports what it wrote', async () => {
      const info = await driver.writeStream('ws', Readable.from([Buffer.from('abc'), Buffer.from('defg')]));
      assert.equal(info.size, 7);
      assert.ok(info.modified instanceof Date);
      assert.equal((await driver.get('ws'))?.toString(), 'abcdefg');
    });

    void test('putFile takes ownership of a local file', async () => {
      const dir = await mkdtemp(path.join(tmpdir(), 'tender-putfile-'));
      try {
        const local = path.join(dir, 'blob');
        await writeFile(local, 'local bytes');
        await driver.putFile('pf/blob', local);
        assert.equal((await driver.get('pf/blob'))?.toString(), 'local bytes');
        await assert.rejects(fsStat(local), { code: 'ENOENT' });
        await assert.rejects(driver.putFile('pf/other', path.join(dir, 'missing')));
        assert.equal(await driver.stat('pf/other'), undefined);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    void test('move renames, replaces, and leaves no empty prefix behind', async () => {
      await driver.put('uploads/u1/data', 'one');
      await driver.move('uploads/u1/data', 'blobs/x');
      assert.equal((await driver.get('blobs/x'))?.toString(), 'one');
      assert.equal(await driver.stat('uploads/u1/data'), undefined);
      assert.deepEqual(await driver.list('uploads'), []);
      await driver.put('src', 'new');
      await driver.move('src', 'blobs/x');
      assert.equal((await driver.get('blobs/x'))?.toString(), 'new');
      assert.equal(await driver.get('src'), undefined);
    });

    void test('delete removes an object or a whole prefix', async () => {
      for (const key of ['p/1', 'p/2', 'p/q/3', 'p/q/r/4', 'r']) await driver.put(key, key);
      await driver.delete('p/1');
      assert.equal(await driver.get('p/1'), undefined);
      assert.deepEqual(await driver.list('p'), ['2', 'q']);
      await driver.delete('p/q/r/4');
      assert.deepEqual(await driver.list('p/q'), ['3'], 'emptied prefix is gone');
      await driver.delete('p');
      assert.equal(await driver.get('p/q/3'), undefined);
      assert.deepEqual(await driver.list('p'), []);
      assert.deepEqual(await driver.list(''), ['r']);
      await driver.delete('p');
    });

    void test('list gives sorted direct children, objects and prefixes alike', async () => {
      for (const key of ['l/b', 'l/a', 'l/c/d', 'l/c/e/f', 'l/B', 'l/a.txt', 'l/a-1', 'l/_x', 'top']) {
        await driver.put(key, 'x');
      }
      assert.deepEqual(await driver.list('l'), ['B', '_x', 'a', 'a-1', 'a.txt', 'b', 'c']);
      assert.deepEqual(await driver.list('l/c'), ['d', 'e']);
      assert.deepEqual(await driver.list('l/c/e'), ['f']);
      assert.deepEqual(await driver.list(''), ['l', 'top']);
    });

    void test('invalid keys are rejected by every method', async () => {
      const local = path.join(tmpdir(), 'tender-never-used');
      const bad = ['../x', '/abs', 'a//b', 'a/./b', '', 'a/../b', 'a/', '..', '.', 'a b', 'a\\b', 'a/\0'];
      for (const key of bad) {
        const ops: Array<[string, () => Promise<unknown>]> = [
          ['stat', () => driver.stat(key)],
          ['get', () => driver.get(key)],
          ['put', () => driver.put(key, 'x')],
          ['reader', () => driver.reader(key)],
          ['writeStream', () => driver.writeStream(key, Readable.from([Buffer.from('x')]))],
          ['putFile', () => driver.putFile(key, local)],
          ['move from', () => driver.move(key, 'ok')],
          ['move to', () => driver.move('ok', key)],
          ['delete', () => driver.delete(key)],
        ];
        if (key !== '') ops.push(['list', () => driver.list(key)]);
        for (const [op, run] of ops) {
          await assert.rejects(run(), { code: 'ERR_STORAGE_KEY' }, `${op}(${JSON.stringify(key)})`);
        }
      }
      assert.deepEqual(await driver.list(''), []);
    });

    void test('concurrent writers to one key end with one complete value', async () => {
      const values = Array.from({ length: 8 }, (_, i) => Buffer.alloc(256 * 1024 + i, i + 1));
      await Promise.all(
        values.map((v, i) =>
          i % 2 === 0 ? driver.put('race', v) : driver.writeStream('race', Readable.from(chunks(v, 16 * 1024))),
        ),
      );
      const final = await driver.get('race');
      assert.ok(final);
      assert.ok(
        values.some((v) => v.equals(final)),
        'the final object is exactly one of the written values',
      );
      assert.equal((await driver.stat('race'))?.size, final.length);
    });

    void test('a large object survives a stream round trip (sha256)', async () => {
      const size = 20 * 1024 * 1024 + 123;
      const written = createHash('sha256');
      const seed = randomBytes(1024 * 1024);
      const source = Readable.from(
        (function* () {
          for (let sent = 0, n = 0; sent < size; n++) {
            const chunk = Buffer.from(seed.subarray(0, Math.min(seed.length, size - sent)));
            chunk.writeUInt32BE(n, 0);
            written.update(chunk);
            sent += chunk.length;
            yield chunk;
          }
        })(),
      );
      const info = await driver.writeStream('big/blob', source);
      assert.equal(info.size, size);
      assert.equal((await driver.stat('big/blob'))?.size, size);
      const stream = await driver.reader('big/blob');
      assert.ok(stream);
      const read = createHash('sha256');
      for await (const chunk of stream) read.update(chunk as Buffer);
      assert.equal(read.digest('hex'), written.digest('hex'));
      const tail = await driver.reader('big/blob', { start: size - 10, end: size - 1 });
      assert.ok(tail);
      assert.equal((await drain(tail)).length, 10);
    });
  });
}

async function drain(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

function* chunks(buf: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}
