import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRateLimitLow, parseRateLimit } from '../src/upstream/ratelimit.ts';

void describe('parseRateLimit', () => {
  void it('parses Docker Hub headers', () => {
    assert.deepEqual(parseRateLimit('100;w=21600', '76;w=21600'), { limit: 100, remaining: 76, windowSeconds: 21600 });
  });

  void it('accepts missing windows and the list form', () => {
    assert.deepEqual(parseRateLimit('200', '3'), { limit: 200, remaining: 3, windowSeconds: undefined });
    assert.deepEqual(parseRateLimit('100, 100;w=21600, 1000;w=86400', '99'), { limit: 100, remaining: 99, windowSeconds: 21600 });
    assert.deepEqual(parseRateLimit(' 100 ; W = 60 ', '0;w=60'), { limit: 100, remaining: 0, windowSeconds: 60 });
  });

  void it('returns undefined unless both headers carry numbers', () => {
    assert.equal(parseRateLimit(undefined, '5;w=1'), undefined);
    assert.equal(parseRateLimit('100;w=21600', undefined), undefined);
    assert.equal(parseRateLimit('lots', '5'), undefined);
    assert.equal(parseRateLimit('', ''), undefined);
  });
});

void describe('isRateLimitLow', () => {
  void it('is true below 10% of the limit', () => {
    assert.equal(isRateLimitLow({ limit: 100, remaining: 9, windowSeconds: 1 }), true);
    assert.equal(isRateLimitLow({ limit: 100, remaining: 10, windowSeconds: 1 }), false);
  });
});
