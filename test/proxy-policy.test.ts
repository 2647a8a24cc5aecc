import { test } from 'node:test';
import assert from 'node:assert/strict';
import { confirmed, isFresh, staleRetryLater } from '../src/proxy/freshness.ts';
import { SingleFlight } from '../src/proxy/single-flight.ts';

test('a tag is fresh for its TTL after confirmation', () => {
  const s = confirmed({ digest: 'sha256:x', mediaType: 't', size: 1 }, 1000, 500);
  assert.equal(s.checkedAt, 1000);
  assert.ok(isFresh(s, 1499));
  assert.ok(!isFresh(s, 1500));
});

test('a failed revalidation backs off briefly, bounded by the TTL', () => {
  const s = confirmed({ digest: 'sha256:x', mediaType: 't', size: 1 }, 0, 300_000);
  assert.equal(staleRetryLater(s, 400_000, 300_000).freshUntil, 430_000);
  assert.equal(staleRetryLater(s, 400_000, 5_000).freshUntil, 405_000);
  assert.equal(staleRetryLater(s, 400_000, 5_000).digest, 'sha256:x');
});

test('single flight: concurrent callers share one run; the key is released after', async () => {
  const flights = new SingleFlight<number>();
  let runs = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const work = async () => {
    runs++;
    await gate;
    return runs;
  };
  const all = Array.from({ length: 8 }, () => flights.run('k', work));
  assert.equal(flights.size, 1);
  release();
  assert.deepEqual(await Promise.all(all), Array(8).fill(1));
  assert.equal(flights.size, 0);
  await assert.rejects(flights.run('k', async () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await flights.run('k', async () => 42), 42, 'a failure is not remembered');
});
