/**
 * The cache lifecycle's building blocks without a server: the eviction
 * policy (pure), pins, and access times persisted through a real store.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { AccessTimes } from '../src/cache/access-times.ts';
import { planEviction, type PlanUnit } from '../src/cache/eviction-plan.ts';
import { Pins, releasedWith } from '../src/cache/pins.ts';
import type { BlobBody } from '../src/proxy/blobs.ts';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { ContentStore } from '../src/store/content-store.ts';
import { cacheRepo } from '../src/store/layout.ts';
import { removeDir, tempDir } from './helpers/tools.ts';

const unit = (id: string, lastAccess: number, refs: string[]): PlanUnit => ({ id, lastAccess, refs });
const sizes = (entries: Record<string, number>): Map<string, number> => new Map(Object.entries(entries));

describe('eviction policy', () => {
  const units = [unit('old', 1, ['m1', 'a']), unit('mid', 2, ['m2', 'b']), unit('new', 3, ['m3', 'c'])];
  const s = sizes({ m1: 10, a: 100, m2: 10, b: 100, m3: 10, c: 100 });

  test('within budget nothing goes', () => {
    const plan = planEviction({ units, sizes: s, local: new Set(), budgetBytes: 330, now: 10 });
    assert.deepEqual(plan.evict, []);
    assert.deepEqual(plan.free, []);
    assert.equal(plan.bytesBefore, 330);
    assert.equal(plan.bytesAfter, 330);
  });

  test('least recently used go first, only until the budget is met', () => {
    const plan = planEviction({ units: [...units].reverse(), sizes: s, local: new Set(), budgetBytes: 200, now: 10 });
    assert.deepEqual(plan.evict, ['old', 'mid']);
    assert.deepEqual(plan.free, ['m1', 'a', 'm2', 'b']);
    assert.equal(plan.bytesAfter, 110);
  });

  test('a shared blob is freed only with the last unit referring to it', () => {
    const shared = [unit('x', 1, ['mx', 'base', 'x1']), unit('y', 2, ['my', 'base', 'y1']), unit('z', 3, ['mz', 'z1'])];
    const sz = sizes({ mx: 1, my: 1, mz: 1, base: 1000, x1: 10, y1: 10, z1: 10 });
    const first = planEviction({ units: shared, sizes: sz, local: new Set(), budgetBytes: 1030, now: 10 });
    assert.deepEqual(first.evict, ['x']);
    assert.deepEqual(first.free, ['mx', 'x1'], 'base still used by y');
    const second = planEviction({ units: shared, sizes: sz, local: new Set(), budgetBytes: 100, now: 10 });
    assert.deepEqual(second.evict, ['x', 'y']);
    assert.ok(second.free.includes('base'));
    assert.equal(second.bytesAfter, 11);
  });

  test('digests local content needs are neither counted nor freed', () => {
    const plan = planEviction({ units, sizes: s, local: new Set(['a', 'b']), budgetBytes: 0, now: 10 });
    assert.equal(plan.bytesBefore, 130);
    assert.deepEqual(plan.evict, ['old', 'mid', 'new']);
    assert.ok(!plan.free.includes('a') && !plan.free.includes('b'));
    assert.equal(plan.bytesAfter, 0);
  });

  test('units unused for longer than maxUnusedMs go whatever the budget', () => {
    const plan = planEviction({ units, sizes: s, local: new Set(), maxUnusedMs: 8, now: 10.5 });
    assert.deepEqual(plan.evict, ['old', 'mid']);
    const withBudget = planEviction({ units, sizes: s, local: new Set(), budgetBytes: 10_000, maxUnusedMs: 9, now: 10.5 });
    assert.deepEqual(withBudget.evict, ['old']);
  });

  test('ties go by id; digests without a size count for nothing', () => {
    const tied = [unit('b', 5, ['1']), unit('a', 5, ['2']), unit('c', 5, ['3'])];
    const plan = planEviction({ units: tied, sizes: sizes({ 1: 5, 2: 5 }), local: new Set(), budgetBytes: 4, now: 10 });
    assert.equal(plan.bytesBefore, 10);
    assert.deepEqual(plan.evict, ['a', 'b']);
  });
});

describe('pins', () => {
  test('counted per digest, released once per pin', () => {
    const pins = new Pins();
    const r1 = pins.pin('sha256:a');
    const r2 = pins.pin('sha256:a');
    assert.ok(pins.isPinned('sha256:a'));
    r1();
    r1();
    assert.ok(pins.isPinned('sha256:a'), 'a second release of the same pin does nothing');
    r2();
    assert.ok(!pins.isPinned('sha256:a'));
    assert.equal(pins.size, 0);
  });

  test('a served body releases its pin when its handle closes or its stream ends', async () => {
    const pins = new Pins();
    let closed = false;
    const handleBody: BlobBody = {
      size: 3,
      range: undefined,
      source: 'cache',
      bytes: { kind: 'handle', handle: { size: 3, read: async () => 0, close: async () => void (closed = true) } },
    };
    const wrapped = releasedWith(handleBody, pins.pin('sha256:h'));
    assert.ok(pins.isPinned('sha256:h'));
    assert.equal(wrapped.bytes.kind, 'handle');
    if (wrapped.bytes.kind === 'handle') await wrapped.bytes.handle.close();
    assert.ok(closed && !pins.isPinned('sha256:h'));

    const stream = new PassThrough();
    releasedWith({ size: 1, range: undefined, source: 'cache', bytes: { kind: 'stream', stream } }, pins.pin('sha256:s'));
    assert.ok(pins.isPinned('sha256:s'));
    stream.destroy();
    await new Promise((r) => setImmediate(r));
    assert.ok(!pins.isPinned('sha256:s'));
  });
});

describe('access times', () => {
  test('survive a restart, merge with what another process stored, and forget evicted content', async (t) => {
    const root = await tempDir('access-times');
    t.after(() => removeDir(root));
    const store = (): ContentStore => new ContentStore(checkedDriver(new FilesystemDriver({ root })));
    const repo = cacheRepo('hub', 'library/alpine');
    const m1 = `sha256:${'1'.repeat(64)}`;
    const m2 = `sha256:${'2'.repeat(64)}`;
    const b1 = `sha256:${'b'.repeat(64)}`;
    // A repository only counts once it has links.
    await store().linkLayer(repo, b1);

    const first = new AccessTimes({ store: store() });
    first.touchManifest(repo, m1, 1000);
    first.touchManifest(repo, m2, 2000);
    first.touchBlob(repo, b1, 1500);
    await first.close();

    const second = new AccessTimes({ store: store() });
    await second.load();
    assert.equal(second.manifestAccess(repo, m1), 1000);
    assert.equal(second.blobAccess(repo, b1), 1500);
    assert.equal(second.repoAccess(repo), 2000);

    // Another process touched m1 later; an older time here does not win.
    second.touchManifest(repo, m1, 500);
    const other = new AccessTimes({ store: store() });
    other.touchManifest(repo, m1, 3000);
    await other.flush();
    await second.flush();
    const third = new AccessTimes({ store: store() });
    await third.load();
    assert.equal(third.manifestAccess(repo, m1), 3000);

    third.forget(repo, [m1, m2, b1]);
    await third.flush();
    assert.equal(await store().getAccessRecord(repo), undefined, 'an empty record is removed');
    const fourth = new AccessTimes({ store: store() });
    await fourth.load();
    assert.equal(fourth.manifestAccess(repo, m2), undefined);
  });
});
