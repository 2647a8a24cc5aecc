/** The htpasswd file: setPassword/removeUser edits, verification, reloads, and Apache's htpasswd agreeing with us. */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile, chmod, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import bcrypt from 'bcryptjs';
import { Htpasswd, removeUser, setPassword } from '../src/auth/htpasswd.ts';
import { createLogger } from '../src/log.ts';
import { removeDir, run, skipUnlessTools, tempDir } from './helpers/tools.ts';

/** Cost 4 keeps the tests fast; the cost does not change what is tested. */
const cost = 4;

function capturingLogger() {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (msg: string) => void lines.push(msg) } });
  return { logger, lines, text: () => lines.join('') };
}

let dir: string;
let n = 0;
const fresh = () => join(dir, `htpasswd-${++n}`);
before(async () => {
  dir = await tempDir('htpasswd');
});
after(() => removeDir(dir));

describe('setPassword and removeUser', () => {
  test('create a 0600 file of $2y$ lines, replace in place, keep other lines', async () => {
    const file = fresh();
    await setPassword(file, 'alice', 'pw-a', cost);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    await writeFile(file, `# team registry\n${await readFile(file, 'utf8')}carol:{SHA}kept-as-is\n`);
    await setPassword(file, 'bob', 'pw-b', cost);
    await setPassword(file, 'alice', 'pw-a2', cost);
    const lines = (await readFile(file, 'utf8')).split('\n');
    assert.equal(lines.length, 5, 'four lines and the final newline');
    assert.equal(lines[0], '# team registry');
    assert.match(lines[1]!, /^alice:\$2y\$04\$[./A-Za-z0-9]{53}$/);
    assert.equal(lines[2], 'carol:{SHA}kept-as-is');
    assert.match(lines[3]!, /^bob:\$2y\$04\$/);
    assert.equal(lines[4], '');
    assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');

    assert.equal(await removeUser(file, 'alice'), true);
    assert.equal(await removeUser(file, 'alice'), false);
    assert.equal(await readFile(file, 'utf8'), `# team registry\ncarol:{SHA}kept-as-is\n${lines[3]}\n`);
  });

  test('an existing file keeps its mode', async () => {
    const file = fresh();
    await writeFile(file, '');
    await chmod(file, 0o640);
    await setPassword(file, 'alice', 'pw', cost);
    assert.equal((await stat(file)).mode & 0o777, 0o640);
  });

  test('bad user names and passwords are refused', async () => {
    const file = fresh();
    for (const name of ['', 'a:b', 'a b', 'a\nb', '$all', '#x']) {
      await assert.rejects(setPassword(file, name, 'pw', cost), /user name/, JSON.stringify(name));
    }
    await assert.rejects(setPassword(file, 'alice', '', cost), /empty/);
    await assert.rejects(setPassword(file, 'alice', 'x'.repeat(73), cost), /72 bytes/);
    await assert.rejects(stat(file), { code: 'ENOENT' }, 'nothing was written');
  });
});

describe('Htpasswd', () => {
  test('the right password verifies; wrong passwords and unknown users do not, at bcrypt cost', async (t) => {
    const file = fresh();
    await setPassword(file, 'alice', 'pa:ss wörd', cost);
    const users = new Htpasswd(file, capturingLogger().logger);
    const compare = t.mock.method(bcrypt, 'compare');
    assert.equal(await users.verify('alice', 'wrong'), false);
    assert.equal(await users.verify('alice', 'pa:ss wörd '), false);
    assert.equal(await users.verify('alice', 'pa:ss wörd'), true);
    assert.equal(compare.mock.callCount(), 3);
    assert.equal(await users.verify('mallory', 'pa:ss wörd'), false);
    assert.equal(compare.mock.callCount(), 4, 'an unknown user still costs one bcrypt compare');
    assert.match(String(compare.mock.calls[3]!.arguments[1]), /^\$2[aby]\$04\$/, 'against a dummy hash of the same cost');
  });

  test('successful verifications are cached; failures are not', async (t) => {
    const file = fresh();
    await setPassword(file, 'alice', 'pw', cost);
    const users = new Htpasswd(file, capturingLogger().logger);
    const compare = t.mock.method(bcrypt, 'compare');
    for (let i = 0; i < 50; i++) assert.equal(await users.verify('alice', 'pw'), true);
    assert.equal(compare.mock.callCount(), 1, 'one bcrypt run for 50 requests');
    for (let i = 0; i < 3; i++) assert.equal(await users.verify('alice', 'nope'), false);
    assert.equal(compare.mock.callCount(), 4);
  });

  test('a changed file is reloaded (checked at most once a second) and clears the cache', async () => {
    const file = fresh();
    await setPassword(file, 'alice', 'old', cost);
    await setPassword(file, 'bob', 'pw', cost);
    const { logger, text } = capturingLogger();
    const users = new Htpasswd(file, logger);
    assert.equal(await users.verify('alice', 'old'), true);
    await setPassword(file, 'alice', 'new', cost);
    await removeUser(file, 'bob');
    assert.equal(await users.verify('alice', 'old'), true, 'within a second the file is not looked at');
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(await users.verify('alice', 'old'), false, 'the cached success is gone');
    assert.equal(await users.verify('alice', 'new'), true);
    assert.equal(await users.verify('bob', 'pw'), false, 'a removed user cannot log in');
    assert.match(text(), /htpasswd file reloaded/);
  });

  test('a missing file means no users until it appears', async () => {
    const file = fresh();
    const { logger, text } = capturingLogger();
    const users = new Htpasswd(file, logger, { recheckMs: 0 });
    assert.equal(await users.verify('alice', 'pw'), false);
    assert.match(text(), /htpasswd file not readable/);
    await setPassword(file, 'alice', 'pw', cost);
    assert.equal(await users.verify('alice', 'pw'), true);
  });

  test('non-bcrypt lines are ignored with a warning naming the user, never the hash', async () => {
    const file = fresh();
    const hashes = {
      sha: '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      apr1: '$apr1$5P0rs7wS$1ZtRm0i9u3DsaHv9kFhtC/',
      crypt: 'rqXexS6ZhobKA',
      shortBcrypt: '$2y$05$tooShort',
    };
    await writeFile(file, `carol:${hashes.sha}\ndave:${hashes.apr1}\nerin:${hashes.crypt}\nfrank:${hashes.shortBcrypt}\njunk line\n\n`);
    await setPassword(file, 'alice', 'pw', cost);
    const { logger, lines, text } = capturingLogger();
    const users = new Htpasswd(file, logger);
    assert.equal(await users.verify('alice', 'pw'), true);
    assert.equal(await users.verify('carol', 'password'), false);
    const warnings = lines.map((l) => JSON.parse(l) as { level: number; user?: string; line?: number });
    assert.deepEqual(
      warnings.filter((w) => w.user).map((w) => w.user),
      ['carol', 'dave', 'erin', 'frank'],
    );
    assert.ok(warnings.some((w) => w.line === 5), 'a line without user:hash is named by number');
    assert.ok(warnings.every((w) => w.level === 40));
    for (const hash of Object.values(hashes)) assert.ok(!text().includes(hash), `hash ${hash} logged`);
    assert.ok(!text().includes('junk line'));
  });

  test('hashes made by Apache htpasswd -B verify, and ours verify with htpasswd -v', { skip: skipUnlessTools('htpasswd') }, async () => {
    const file = fresh();
    await run('htpasswd', ['-c', '-B', '-b', file, 'apache', 's3cret:with colon']);
    await run('htpasswd', ['-B', '-C', '6', '-b', file, 'apache6', 'other']);
    await setPassword(file, 'ours', 'pw ours', cost);
    assert.match(await readFile(file, 'utf8'), /^apache:\$2y\$05\$/m);
    const users = new Htpasswd(file, capturingLogger().logger);
    assert.equal(await users.verify('apache', 's3cret:with colon'), true);
    assert.equal(await users.verify('apache', 's3cret'), false);
    assert.equal(await users.verify('apache6', 'other'), true);
    await run('htpasswd', ['-v', '-b', file, 'ours', 'pw ours']);
    const wrong = await run('htpasswd', ['-v', '-b', file, 'ours', 'nope'], { allowFail: true });
    assert.notEqual(wrong.code, 0);
  });
});
