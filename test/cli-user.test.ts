/** `tender user add|rm` as operators run it, checked by the Htpasswd class the server uses. */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Htpasswd } from '../src/auth/htpasswd.ts';
import { createLogger } from '../src/log.ts';
import { removeDir, run, tempDir } from './helpers/tools.ts';

const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
const silent = createLogger({ level: 'silent' });
const tender = (args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv; allowFail?: boolean } = {}) =>
  run(process.execPath, [cli, ...args], { env: { TENDER_CONFIG: '', ...opts.env }, ...(opts.input !== undefined && { input: opts.input }), allowFail: opts.allowFail });

describe('tender user', () => {
  let dir: string;
  before(async () => {
    dir = await tempDir('cli-user');
  });
  after(() => removeDir(dir));

  test('add --password-stdin writes a 0600 file the server verifies; a second add replaces the password', async () => {
    const file = join(dir, 'htpasswd');
    const added = await tender(['user', 'add', 'bob', '--htpasswd', file, '--password-stdin', '--cost', '4'], { input: 'pw: with colon\n' });
    assert.match(added.stdout, /user bob set in/);
    assert.ok(!added.stdout.includes('pw: with colon') && !added.stderr.includes('pw: with colon'));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal(await new Htpasswd(file, silent).verify('bob', 'pw: with colon'), true, 'one trailing newline is dropped');

    await tender(['user', 'add', 'bob', '--htpasswd', file, '--password-stdin', '--cost', '4'], { input: 'second' });
    await tender(['user', 'add', 'carol', '--htpasswd', file, '--password-stdin', '--cost', '4'], { input: 'c\n' });
    const users = new Htpasswd(file, silent);
    assert.equal(await users.verify('bob', 'second'), true);
    assert.equal(await users.verify('bob', 'pw: with colon'), false);
    assert.equal(await users.verify('carol', 'c'), true);
    assert.equal((await readFile(file, 'utf8')).split('\n').filter(Boolean).length, 2);
  });

  test('rm removes the user; removing an unknown user fails', async () => {
    const file = join(dir, 'rm-htpasswd');
    await tender(['user', 'add', 'dave', '--htpasswd', file, '--password-stdin', '--cost', '4'], { input: 'pw' });
    await tender(['user', 'rm', 'dave', '--htpasswd', file]);
    assert.equal(await new Htpasswd(file, silent).verify('dave', 'pw'), false);
    const again = await tender(['user', 'rm', 'dave', '--htpasswd', file], { allowFail: true });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /no user dave/);
  });

  test('the file defaults to auth.htpasswd of the config, relative to the config file', async () => {
    const config = join(dir, 'tender.yaml');
    await writeFile(config, 'auth:\n  htpasswd: ./users.htpasswd\n');
    await tender(['user', 'add', 'erin', '--config', config, '--password-stdin', '--cost', '4'], { input: 'e' });
    await tender(['user', 'add', 'frank', '--password-stdin', '--cost', '4'], { input: 'f', env: { TENDER_CONFIG: config } });
    const users = new Htpasswd(join(dir, 'users.htpasswd'), silent);
    assert.equal(await users.verify('erin', 'e'), true);
    assert.equal(await users.verify('frank', 'f'), true);
  });

  test('refusals: no file configured, no password, a bad name, a bad config', async () => {
    const none = await tender(['user', 'add', 'gina', '--password-stdin'], { input: 'pw', allowFail: true });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no htpasswd file/);
    const file = join(dir, 'refusals');
    const empty = await tender(['user', 'add', 'gina', '--htpasswd', file, '--password-stdin'], { input: '\n', allowFail: true });
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /password is empty/);
    const noTty = await tender(['user', 'add', 'gina', '--htpasswd', file], { input: '', allowFail: true });
    assert.equal(noTty.code, 1);
    assert.match(noTty.stderr, /--password-stdin/);
    const badName = await tender(['user', 'add', 'a:b', '--htpasswd', file, '--password-stdin'], { input: 'pw', allowFail: true });
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /user name/);
    await assert.rejects(stat(file), { code: 'ENOENT' });
    const badConfig = join(dir, 'bad.yaml');
    await writeFile(badConfig, 'auth:\n  htpasswd: 42\n  realms: x\n');
    const bad = await tender(['user', 'add', 'gina', '--config', badConfig, '--password-stdin'], { input: 'pw', allowFail: true });
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /auth\.realms/);
  });
});
