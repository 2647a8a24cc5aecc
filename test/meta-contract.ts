import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { MetaStore } from '../src/meta/meta.ts';

/**
 * The contract every metadata store passes. `make` gives a fresh, empty store
 * per test; `cleanup` removes whatever it left behind (after close).
 */
export function metaContract(
  name: string,
  make: () => Promise<{ meta: MetaStore; cleanup(): Promise<void> }>,
  options: { skip?: string } = {},
): void {
  void describe(`meta contract: ${name}`, { skip: options.skip || false }, () => {
    let meta: MetaStore;
    let cleanup: () => Promise<void>;
    let closed: boolean;

    beforeEach(async () => {
      ({ meta, cleanup } = await make());
      closed = false;
    });
    afterEach(async () => {
      if (!closed) await meta.close();
      await cleanup();
    });

    void test('get, set and delete', async () => {
      assert.equal(await meta.get('missing'), undefined);
      await meta.set('tag:hub/library/alpine:3', { digest: 'sha256:abc' });
      assert.deepEqual(await meta.get('tag:hub/library/alpine:3'), { digest: 'sha256:abc' });
      assert.equal(await meta.delete('tag:hub/library/alpine:3'), true);
      assert.equal(await meta.get('tag:hub/library/alpine:3'), undefined);
      assert.equal(await meta.delete('tag:hub/library/alpine:3'), false);
    });

    void test('JSON values round trip as copies', async () => {
      const values: unknown[] = [
        'a string',
        ':colon-led string',
        0,
        -1.5,
        true,
        false,
        null,
        [],
        [1, 'two', { three: 3 }],
        { nested: { list: ['x'], n: 1, empty: {} }, unicode: 'héllo ✓' },
      ];
      for (const [i, v] of values.entries()) await meta.set(`v${i}`, v);
      for (const [i, v] of values.entries()) assert.deepEqual(await meta.get(`v${i}`), v, `value ${i}`);
      const got = await meta.get<{ nested: { n: number } }>('v9');
      assert.ok(got);
      got.nested.n = 99;
      assert.equal((await meta.get<{ nested: { n: number } }>('v9'))?.nested.n, 1, 'stored value is not shared');
    });

    void test('overwrite replaces value and expiry', async () => {
      await meta.set('k', 'first', 60);
      await meta.set('k', { second: true });
      await sleep(150);
      assert.deepEqual(await meta.get('k'), { second: true }, 'a set without ttl clears the old ttl');
      await meta.set('k', 'third', 60_000);
      assert.equal(await meta.get('k'), 'third');
    });

    void test('ttl expiry', async () => {
      await meta.set('short', 'x', 80);
      await meta.set('long', 'y', 60_000);
      await meta.set('forever', 'z');
      assert.equal(await meta.get('short'), 'x');
      await sleep(200);
      assert.equal(await meta.get('short'), undefined);
      assert.equal(await meta.delete('short'), false, 'an expired key is not there to delete');
      assert.equal(await meta.get('long'), 'y');
      assert.equal(await meta.get('forever'), 'z');
    });

    void test('concurrent sets', async () => {
      await Promise.all(Array.from({ length: 200 }, (_, i) => meta.set(`c${i}`, { i })));
      const got = await Promise.all(Array.from({ length: 200 }, (_, i) => meta.get<{ i: number }>(`c${i}`)));
      assert.deepEqual(
        got.map((v) => v?.i),
        Array.from({ length: 200 }, (_, i) => i),
      );
      await Promise.all(Array.from({ length: 50 }, (_, i) => meta.set('same', { writer: i, pad: 'x'.repeat(i * 10) })));
      const final = await meta.get<{ writer: number; pad: string }>('same');
      assert.ok(final);
      assert.equal(final.pad, 'x'.repeat(final.writer * 10), 'one whole value wins');
    });

    void test('close', async () => {
      await meta.set('k', 1);
      await meta.close();
      closed = true;
    });
  });
}
