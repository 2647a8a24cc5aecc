import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MetaStore } from '../src/meta/meta.ts';
import { parseTokenResponse, TokenCache, tokenCacheTtlMs, tokenUrl, type TokenRequest } from '../src/upstream/tokens.ts';

/** A Map-backed MetaStore that records TTLs and honours expiry by a fake clock. */
function mapMeta(clock = { now: 0 }): MetaStore & { ttls: Map<string, number | undefined>; data: Map<string, unknown> } {
  const data = new Map<string, unknown>();
  const expires = new Map<string, number>();
  const ttls = new Map<string, number | undefined>();
  return {
    data,
    ttls,
    get: <T>(key: string) => {
      const at = expires.get(key);
      if (at !== undefined && clock.now >= at) data.delete(key);
      return Promise.resolve(data.get(key) as T | undefined);
    },
    set: (key, value, ttlMs) => {
      data.set(key, value);
      ttls.set(key, ttlMs);
      if (ttlMs !== undefined) expires.set(key, clock.now + ttlMs);
      return Promise.resolve();
    },
    delete: (key) => Promise.resolve(data.delete(key)),
    close: () => Promise.resolve(),
  };
}

const request: TokenRequest = { realm: 'https://auth.example/token', service: 'registry.example', scope: 'repository:team/app:pull' };

void describe('tokenCacheTtlMs', () => {
  void it('keeps a margin of 10% or 10 s, whichever is smaller, at least 1 s', () => {
    assert.equal(tokenCacheTtlMs(300), 290_000);
    assert.equal(tokenCacheTtlMs(60), 54_000);
    assert.equal(tokenCacheTtlMs(20), 18_000);
    assert.equal(tokenCacheTtlMs(5), 4_000);
    assert.equal(tokenCacheTtlMs(1), 0);
    assert.equal(tokenCacheTtlMs(0), 0);
    assert.equal(tokenCacheTtlMs(Number.NaN), 0);
  });
});

void describe('tokenUrl and parseTokenResponse', () => {
  void it('adds service and scope to the realm, keeping its query', () => {
    const url = tokenUrl({ realm: 'https://auth.example/token?x=1', service: 'svc', scope: 'repository:a/b:pull' });
    assert.equal(url.href, 'https://auth.example/token?x=1&service=svc&scope=repository%3Aa%2Fb%3Apull');
    assert.equal(tokenUrl({ ...request, service: undefined }).searchParams.has('service'), false);
  });

  void it('reads token or access_token and defaults expires_in to 60', () => {
    assert.deepEqual(parseTokenResponse({ token: 't', expires_in: 300 }), { token: 't', expiresIn: 300 });
    assert.deepEqual(parseTokenResponse({ access_token: 'a' }), { token: 'a', expiresIn: 60 });
    assert.deepEqual(parseTokenResponse({ token: '', access_token: 'a', expires_in: -3 }), { token: 'a', expiresIn: 60 });
    assert.equal(parseTokenResponse({}), undefined);
    assert.equal(parseTokenResponse('token'), undefined);
    assert.equal(parseTokenResponse(null), undefined);
  });
});

void describe('TokenCache', () => {
  void it('fetches once for many concurrent requests of one scope, then serves the cache', async () => {
    const meta = mapMeta();
    let fetched = 0;
    const cache = new TokenCache({
      upstream: 'hub',
      meta,
      fetch: async () => {
        fetched++;
        await sleep(20);
        return { token: `t${fetched}`, expiresIn: 300 };
      },
    });
    const tokens = await Promise.all(Array.from({ length: 20 }, () => cache.token(request)));
    assert.equal(fetched, 1);
    assert.equal(cache.fetches, 1);
    assert.ok(tokens.every((t) => t.token === 't1' && t.fresh));
    assert.deepEqual(await cache.token(request), { token: 't1', fresh: false });
    assert.equal(fetched, 1);
    const [ttl] = [...meta.ttls.values()];
    assert.ok(ttl !== undefined && ttl <= 290_000 && ttl > 289_000, `ttl ${ttl} is the lifetime less the margin and the fetch time`);
    assert.ok([...meta.data.keys()].every((k) => k.startsWith('upstream-token:hub:')));
  });

  void it('keys by realm, service and scope', async () => {
    let fetched = 0;
    const cache = new TokenCache({ upstream: 'hub', meta: mapMeta(), fetch: () => Promise.resolve({ token: `t${++fetched}`, expiresIn: 60 }) });
    await cache.token(request);
    await cache.token({ ...request, scope: 'repository:other:pull' });
    await cache.token({ ...request, service: 'other' });
    await cache.token({ ...request, realm: 'https://other/token' });
    await cache.token(request);
    assert.equal(fetched, 4);
  });

  void it('shares tokens through the MetaStore (another replica) and expires them', async () => {
    const clock = { now: 0 };
    const meta = mapMeta(clock);
    let fetched = 0;
    const fetch = () => Promise.resolve({ token: `t${++fetched}`, expiresIn: 60 });
    const a = new TokenCache({ upstream: 'hub', meta, fetch, now: () => clock.now });
    const b = new TokenCache({ upstream: 'hub', meta, fetch, now: () => clock.now });
    assert.equal((await a.token(request)).token, 't1');
    assert.equal((await b.token(request)).token, 't1');
    clock.now = 54_000;
    assert.equal((await b.token(request)).token, 't2');
    assert.equal(fetched, 2);
  });

  void it('replaces a token the upstream refused, once for all who saw it refused', async () => {
    let fetched = 0;
    const cache = new TokenCache({
      upstream: 'hub',
      meta: mapMeta(),
      fetch: async () => {
        await sleep(10);
        return { token: `t${++fetched}`, expiresIn: 300 };
      },
    });
    const first = await cache.token(request);
    const again = await Promise.all(Array.from({ length: 5 }, () => cache.token(request, first.token)));
    assert.ok(again.every((t) => t.token === 't2'));
    assert.equal(fetched, 2);
    assert.deepEqual(await cache.token(request, first.token), { token: 't2', fresh: false });
  });

  void it('does not cache short-lived tokens and shares a failed fetch', async () => {
    const meta = mapMeta();
    let fetched = 0;
    const cache = new TokenCache({ upstream: 'hub', meta, fetch: () => Promise.resolve({ token: `t${++fetched}`, expiresIn: 1 }) });
    await cache.token(request);
    await cache.token(request);
    assert.equal(fetched, 2);
    assert.equal(meta.data.size, 0);

    let calls = 0;
    const failing = new TokenCache({
      upstream: 'hub',
      meta,
      fetch: async () => {
        calls++;
        await sleep(5);
        throw new Error('realm down');
      },
    });
    const results = await Promise.allSettled(Array.from({ length: 3 }, () => failing.token(request)));
    assert.ok(results.every((r) => r.status === 'rejected'));
    assert.equal(calls, 1);
    await assert.rejects(failing.token(request), /realm down/);
    assert.equal(calls, 2, 'a failure is not cached');
  });

  void it('keeps working when the MetaStore fails', async () => {
    const broken: MetaStore = {
      get: () => Promise.reject(new Error('redis down')),
      set: () => Promise.reject(new Error('redis down')),
      delete: () => Promise.reject(new Error('redis down')),
      close: () => Promise.resolve(),
    };
    const cache = new TokenCache({ upstream: 'hub', meta: broken, fetch: () => Promise.resolve({ token: 't', expiresIn: 60 }) });
    assert.equal((await cache.token(request)).token, 't');
  });

  void it('remembers the last Bearer challenge', () => {
    const cache = new TokenCache({ upstream: 'hub', meta: mapMeta(), fetch: () => Promise.reject(new Error('unused')) });
    assert.equal(cache.challenge, undefined);
    cache.rememberChallenge({ realm: 'https://r', service: 's' });
    assert.deepEqual(cache.challenge, { realm: 'https://r', service: 's' });
  });
});
