import assert from 'node:assert/strict';
import fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { describe, mock, test } from 'node:test';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { storageContract } from './storage-contract.ts';

async function tempDir(): Promise<string> {
  return fsp.mkdtemp(path.join(tmpdir(), 'tender-fs-'));
}

storageContract('filesystem', async () => {
  const root = await tempDir();
  return { driver: checkedDriver(new FilesystemDriver({ root })), cleanup: () => fsp.rm(root, { recursive: true }) };
});

void describe('filesystem driver', () => {
  void test('no key reaches outside the root, even unwrapped', async (t) => {
    const parent = await tempDir();
    t.after(() => fsp.rm(parent, { recursive: true }));
    const driver = new FilesystemDriver({ root: path.join(parent, 'root') });
    await driver.put('ok', 'x');
    const bad = ['../escape', '../../escape', '/etc/passwd', 'a/../../escape', '..', '_tmp', '_tmp/x', 'a//b', ''];
    for (const key of bad) {
      assert.throws(() => driver.localPath(key), { code: 'ERR_STORAGE_KEY' }, key);
      await assert.rejects(driver.put(key, 'x'), { code: 'ERR_STORAGE_KEY' }, key);
      await assert.rejects(driver.get(key), { code: 'ERR_STORAGE_KEY' }, key);
      await assert.rejects(driver.delete(key), { code: 'ERR_STORAGE_KEY' }, key);
      await assert.rejects(driver.move('ok', key), { code: 'ERR_STORAGE_KEY' }, key);
    }
    assert.deepEqual(await fsp.readdir(parent), ['root']);
    assert.deepEqual((await fsp.readdir(path.join(parent, 'root'))).sort(), ['_tmp', 'ok']);
    assert.equal((await driver.get('ok'))?.toString(), 'x');
    assert.equal(driver.localPath('a/b.c'), path.join(parent, 'root', 'a', 'b.c'));
  });

  void test('temporary files are cleaned up after failed writes', async (t) => {
    const root = await tempDir();
    t.after(() => fsp.rm(root, { recursive: true }));
    const driver = new FilesystemDriver({ root });
    const failing = Readable.from(
      (async function* () {
        yield Buffer.alloc(1024 * 1024, 1);
        throw new Error('boom');
      })(),
    );
    await assert.rejects(driver.writeStream('x/y', failing), /boom/);
    // Writing onto a prefix (a directory) fails at the rename.
    await driver.put('dir/child', 'c');
    await assert.rejects(driver.put('dir', 'x'));
    await assert.rejects(driver.writeStream('dir', Readable.from([Buffer.from('x')])));
    assert.deepEqual(await fsp.readdir(path.join(root, '_tmp')), []);
    assert.deepEqual(await driver.list(''), ['dir'], 'the internal _tmp is never listed');
  });

  void test('a reader opened before an overwrite keeps reading the old object', async (t) => {
    const root = await tempDir();
    t.after(() => fsp.rm(root, { recursive: true }));
    const driver = new FilesystemDriver({ root });
    await driver.put('k', Buffer.alloc(4 * 1024 * 1024, 'a'));
    const stream = await driver.reader('k');
    assert.ok(stream);
    await driver.put('k', 'b');
    let bytes = 0;
    for await (const chunk of stream) {
      assert.ok((chunk as Buffer).every((c) => c === 0x61));
      bytes += (chunk as Buffer).length;
    }
    assert.equal(bytes, 4 * 1024 * 1024);
  });

  void test('delete prunes emptied directories but never the root', async (t) => {
    const root = await tempDir();
    t.after(() => fsp.rm(root, { recursive: true }));
    const driver = new FilesystemDriver({ root });
    await driver.put('a/b/c/d', 'x');
    await driver.delete('a/b/c/d');
    assert.deepEqual(await fsp.readdir(root), ['_tmp']);
    await driver.delete('a');
    await fsp.access(root);
  });

  void test('putFile falls back to copy and unlink across filesystems (EXDEV)', async (t) => {
    const root = await tempDir();
    t.after(() => fsp.rm(root, { recursive: true }));
    const driver = new FilesystemDriver({ root });
    const local = path.join(root, 'outside-keys');
    await fsp.writeFile(local, 'copied');
    const realRename = fsp.rename;
    let refused = 0;
    mock.method(fsp, 'rename', async (from: string, to: string) => {
      if (from === local) {
        refused++;
        throw Object.assign(new Error('EXDEV: cross-device link not permitted'), { code: 'EXDEV' });
      }
      return realRename(from, to);
    });
    t.after(() => mock.restoreAll());
    await driver.putFile('blob', local);
    assert.equal(refused, 1);
    assert.equal((await driver.get('blob'))?.toString(), 'copied');
    await assert.rejects(fsp.access(local), { code: 'ENOENT' });
    assert.deepEqual(await fsp.readdir(path.join(root, '_tmp')), []);
  });

  void test('putFile from a real other filesystem (/dev/shm)', async (t) => {
    const root = await tempDir();
    t.after(() => fsp.rm(root, { recursive: true }));
    const shm = await fsp.stat('/dev/shm').catch(() => undefined);
    // Debian (and CI) mounts /dev/shm as tmpfs: a different filesystem from the temp dir.
    assert.ok(shm && shm.dev !== (await fsp.stat(root)).dev, 'a second filesystem at /dev/shm');
    const local = path.join('/dev/shm', `tender-${process.pid}-${Date.now()}`);
    await fsp.writeFile(local, 'from tmpfs');
    t.after(() => fsp.rm(local, { force: true }));
    const driver = new FilesystemDriver({ root });
    await driver.putFile('a/blob', local);
    assert.equal((await driver.get('a/blob'))?.toString(), 'from tmpfs');
    await assert.rejects(fsp.access(local), { code: 'ENOENT' });
  });
});
