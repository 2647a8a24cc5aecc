import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRetryable, parseRetryAfter, retryDelay } from '../src/upstream/retry.ts';

void describe('retryDelay', () => {
  void it('doubles the jitter ceiling per attempt', () => {
    const top = () => 0.999999;
    assert.equal(retryDelay(1, { baseMs: 100, random: top }), 99);
    assert.equal(retryDelay(2, { baseMs: 100, random: top }), 199);
    assert.equal(retryDelay(3, { baseMs: 100, random: top }), 399);
  });

  void it('uses full jitter: anywhere from 0 to the ceiling', () => {
    assert.equal(retryDelay(3, { baseMs: 100, random: () => 0 }), 0);
    assert.equal(retryDelay(3, { baseMs: 100, random: () => 0.5 }), 200);
    for (let i = 0; i < 200; i++) {
      const d = retryDelay(4, { baseMs: 100 });
      assert.ok(d >= 0 && d < 800, String(d));
    }
  });

  void it('caps at maxMs however many attempts', () => {
    assert.equal(retryDelay(50, { baseMs: 100, maxMs: 5000, random: () => 0.999999 }), 4999);
    assert.equal(retryDelay(1e6, { maxMs: 5000, random: () => 0.5 }), 2500);
  });

  void it('honours Retry-After as a lower bound, still capped', () => {
    assert.equal(retryDelay(1, { baseMs: 100, retryAfterSeconds: 2, random: () => 0.5 }), 2000);
    assert.equal(retryDelay(1, { retryAfterSeconds: 120, maxMs: 10_000 }), 10_000);
    assert.equal(retryDelay(8, { baseMs: 1000, maxMs: 60_000, retryAfterSeconds: 1, random: () => 0.5 }), 30_000);
  });

  void it('has sane defaults', () => {
    const d = retryDelay(1, { random: () => 0.999999 });
    assert.ok(d > 0 && d <= 250);
    assert.equal(retryDelay(0, { baseMs: 100, random: () => 0.999999 }), 99);
  });
});

void describe('isRetryable', () => {
  void it('retries network trouble and transient 5xx only', () => {
    assert.equal(isRetryable('UNAVAILABLE'), true);
    for (const code of ['NOT_FOUND', 'UNAUTHORIZED', 'DENIED', 'TOO_MANY_REQUESTS', 'INVALID'] as const) {
      assert.equal(isRetryable(code), false, code);
    }
    for (const status of [408, 500, 502, 503, 504]) assert.equal(isRetryable(status), true, String(status));
    for (const status of [200, 400, 401, 403, 404, 429, 501]) assert.equal(isRetryable(status), false, String(status));
  });
});

void describe('parseRetryAfter', () => {
  void it('parses seconds and HTTP dates', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('120', now), 120);
    assert.equal(parseRetryAfter(' 0 ', now), 0);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:29:30 GMT', now), 90);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now), 0);
    assert.equal(parseRetryAfter(undefined, now), undefined);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter('-5', now), undefined);
  });
});
