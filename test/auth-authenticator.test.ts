/** Basic authentication: header parsing, the failed-login limiter and the authenticator built from them. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createAuthenticator } from '../src/auth/authenticator.ts';
import { parseBasic } from '../src/auth/basic.ts';
import { setPassword } from '../src/auth/htpasswd.ts';
import { FailedLoginLimiter } from '../src/auth/limiter.ts';
import { configSchema, type Config } from '../src/config/schema.ts';
import { createLogger } from '../src/log.ts';
import { RegistryError } from '../src/registry/errors.ts';
import { removeDir, tempDir } from './helpers/tools.ts';

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('parseBasic', () => {
  test('user name and password, the password may contain ":"', () => {
    assert.deepEqual(parseBasic(basic('alice', 'pw')), { username: 'alice', password: 'pw' });
    assert.deepEqual(parseBasic(basic('alice', 'a:b:c')), { username: 'alice', password: 'a:b:c' });
    assert.deepEqual(parseBasic(basic('alice', '')), { username: 'alice', password: '' });
    assert.deepEqual(parseBasic(basic('zoë', 'pässword')), { username: 'zoë', password: 'pässword' });
  });

  test('the scheme in any case, with surrounding blanks', () => {
    const token = Buffer.from('bob:pw').toString('base64');
    for (const header of [`basic ${token}`, `BASIC ${token}`, `bAsIc   ${token}  `, `Basic\t${token}`]) {
      assert.deepEqual(parseBasic(header), { username: 'bob', password: 'pw' }, header);
    }
  });

  test('malformed headers are undefined', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    for (const header of [
      undefined,
      '',
      'Basic',
      'Basic ',
      `Bearer ${b64('bob:pw')}`,
      `Basicx ${b64('bob:pw')}`,
      `Basic ${b64('no-colon')}`,
      `Basic ${b64(':pw')}`,
      `Basic ${b64('a\nb:pw')}`,
      'Basic !!!!',
      `Basic ${b64('bob:pw')} extra`,
      'Basic Ym9iOnB3=====',
      'Basic Ym9iOnB3Y',
      `Basic ${Buffer.from([0x62, 0x3a, 0xff, 0xfe]).toString('base64')}`,
      `Basic ${b64(`bob:${'x'.repeat(9000)}`)}`,
    ]) {
      assert.equal(parseBasic(header), undefined, String(header).slice(0, 40));
    }
  });
});

describe('FailedLoginLimiter', () => {
  test('blocks an address after max failures within the window, per address', async () => {
    const limiter = new FailedLoginLimiter({ max: 3, window: 200 });
    for (let i = 0; i < 2; i++) limiter.failed('10.0.0.1');
    assert.equal(limiter.blocked('10.0.0.1'), false);
    limiter.failed('10.0.0.1');
    assert.equal(limiter.blocked('10.0.0.1'), true);
    assert.ok(limiter.retryAfter('10.0.0.1') > 0 && limiter.retryAfter('10.0.0.1') <= 200);
    assert.equal(limiter.blocked('10.0.0.2'), false);
    assert.equal(limiter.retryAfter('10.0.0.2'), 0);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(limiter.blocked('10.0.0.1'), false, 'the window ends');
  });

  test('later failures do not extend the window; a success clears the count', async () => {
    const limiter = new FailedLoginLimiter({ max: 2, window: 400 });
    limiter.failed('a');
    await new Promise((r) => setTimeout(r, 250));
    limiter.failed('a');
    assert.equal(limiter.blocked('a'), true);
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(limiter.blocked('a'), false, 'counted from the first failure');
    limiter.failed('b');
    limiter.succeeded('b');
    limiter.failed('b');
    assert.equal(limiter.blocked('b'), false);
  });

  test('remembers a bounded number of addresses', () => {
    const limiter = new FailedLoginLimiter({ max: 1, window: 60_000, maxAddresses: 100 });
    for (let i = 0; i < 1000; i++) limiter.failed(`addr-${i}`);
    assert.equal(limiter.blocked('addr-999'), true);
    assert.equal(limiter.blocked('addr-0'), false, 'the oldest were forgotten');
  });
});

describe('createAuthenticator', () => {
  let dir: string;
  let htpasswd: string;
  const password = 'correct horse: battery staple';
  before(async () => {
    dir = await tempDir('authenticator');
    htpasswd = join(dir, 'htpasswd');
    await setPassword(htpasswd, 'alice', password, 4);
  });
  after(() => removeDir(dir));

  function setup(auth: Record<string, unknown> = {}) {
    const lines: string[] = [];
    const logger = createLogger({ level: 'trace', destination: { write: (msg: string) => void lines.push(msg) } });
    const config: Config['auth'] = configSchema.parse({ auth: { htpasswd, ...auth } }).auth;
    return { authenticator: createAuthenticator(config, logger), log: () => lines.join('') };
  }

  async function rejection(p: Promise<unknown>): Promise<RegistryError> {
    try {
      await p;
    } catch (err) {
      assert.ok(err instanceof RegistryError, `expected a RegistryError, got ${String(err)}`);
      return err;
    }
    assert.fail('expected a rejection');
  }

  test('without an htpasswd file, auth is off and everyone is anonymous', async () => {
    const lines: string[] = [];
    const logger = createLogger({ level: 'trace', destination: { write: (msg: string) => void lines.push(msg) } });
    const authenticator = createAuthenticator(configSchema.parse({}).auth, logger);
    assert.equal(authenticator.enabled, false);
    assert.deepEqual(await authenticator.authenticate(undefined, '127.0.0.1'), { kind: 'anonymous' });
    assert.deepEqual(await authenticator.authenticate(basic('alice', 'whatever'), '127.0.0.1'), { kind: 'anonymous' });
    assert.deepEqual(authenticator.challenge(), { 'WWW-Authenticate': 'Basic realm="tender"' });
  });

  test('no header is anonymous; good credentials are the user', async () => {
    const { authenticator } = setup();
    assert.equal(authenticator.enabled, true);
    assert.deepEqual(await authenticator.authenticate(undefined, '127.0.0.1'), { kind: 'anonymous' });
    assert.deepEqual(await authenticator.authenticate(basic('alice', password), '127.0.0.1'), { kind: 'user', name: 'alice' });
  });

  test('bad, unknown and malformed credentials are UNAUTHORIZED with the Basic challenge', async () => {
    const { authenticator, log } = setup({ realm: 'acme "prod"' });
    const challenge = { 'WWW-Authenticate': 'Basic realm="acme \\"prod\\""' };
    assert.deepEqual(authenticator.challenge(), challenge);
    for (const header of [basic('alice', 'wrong'), basic('mallory', password), 'Basic !!!', 'Bearer abc.def']) {
      const err = await rejection(authenticator.authenticate(header, '127.0.0.2'));
      assert.equal(err.code, 'UNAUTHORIZED');
      assert.equal(err.status, 401);
      assert.deepEqual(err.headers, challenge);
    }
    const warnings = log()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { level: number; msg: string; user?: string; addr?: string });
    const failed = warnings.filter((w) => w.msg === 'failed login');
    assert.deepEqual(failed.map((w) => [w.level, w.user, w.addr]), [
      [40, 'alice', '127.0.0.2'],
      [40, 'mallory', '127.0.0.2'],
    ]);
  });

  test('an address is refused with TOOMANYREQUESTS after max failures, even with the right password', async () => {
    const { authenticator } = setup({ failedLogins: { max: 3, window: '1m' } });
    for (let i = 0; i < 3; i++) {
      assert.equal((await rejection(authenticator.authenticate(basic('alice', `guess-${i}`), '10.1.1.1'))).code, 'UNAUTHORIZED');
    }
    const blocked = await rejection(authenticator.authenticate(basic('alice', password), '10.1.1.1'));
    assert.equal(blocked.code, 'TOOMANYREQUESTS');
    assert.equal(blocked.status, 429);
    assert.match(blocked.headers['Retry-After'] ?? '', /^\d+$/);
    assert.ok(Number(blocked.headers['Retry-After']) <= 60);
    assert.deepEqual(await authenticator.authenticate(undefined, '10.1.1.1'), { kind: 'anonymous' }, 'anonymous requests are not refused');
    assert.deepEqual(await authenticator.authenticate(basic('alice', password), '10.1.1.2'), { kind: 'user', name: 'alice' }, 'other addresses are unaffected');
  });

  test('a good login clears the address', async () => {
    const { authenticator } = setup({ failedLogins: { max: 2, window: '1m' } });
    await rejection(authenticator.authenticate(basic('alice', 'x'), '10.2.0.1'));
    await authenticator.authenticate(basic('alice', password), '10.2.0.1');
    await rejection(authenticator.authenticate(basic('alice', 'y'), '10.2.0.1'));
    assert.deepEqual(await authenticator.authenticate(basic('alice', password), '10.2.0.1'), { kind: 'user', name: 'alice' });
  });

  test('the log never holds a password or the Authorization header', async () => {
    const { authenticator, log } = setup({ failedLogins: { max: 2, window: '1m' } });
    const headers = [basic('alice', password), basic('alice', 'wrong-secret-1'), basic('bob', 'wrong-secret-2'), basic('alice', 'wrong-secret-3')];
    for (const header of headers) await authenticator.authenticate(header, '10.3.0.1').catch(() => undefined);
    const text = log();
    assert.match(text, /failed login/);
    assert.match(text, /too many failed logins/);
    for (const secret of [password, 'wrong-secret-1', 'wrong-secret-2', 'wrong-secret-3', ...headers, ...headers.map((h) => h.slice(6))]) {
      assert.ok(!text.includes(secret), `${secret} logged:\n${text}`);
    }
  });
});
