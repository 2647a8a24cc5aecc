/**
 * The tender command as operators run it: help, config validation, serving
 * JSON logs without secrets, and a graceful stop on SIGTERM.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, removeDir, run, tempDir, teardown, waitFor } from './helpers/tools.ts';

const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

describe('tender CLI', () => {
  const td = teardown();
  after(() => td.run());

  test('--help lists the commands', async () => {
    const { stdout } = await run(process.execPath, [cli, '--help']);
    assert.match(stdout, /serve/);
    assert.match(stdout, /check-config/);
  });

  test('a bad config is refused at start, naming every bad key', async () => {
    const dir = await tempDir('cli-bad');
    td.add(() => removeDir(dir));
    const file = join(dir, 'bad.yaml');
    await writeFile(file, 'server:\n  port: eighty\n  colour: blue\nupstreams:\n  hub:\n    url: ftp://example\n    tagTtl: soon\n');
    const r = await run(process.execPath, [cli, 'serve', '--config', file], { allowFail: true, env: { TENDER_LOG__LEVEL: 'loud' } });
    assert.equal(r.code, 2);
    for (const key of ['server.port', 'server.colour', 'upstreams.hub.url', 'upstreams.hub.tagTtl', 'log.level']) {
      assert.ok(r.stderr.includes(key), `stderr names ${key}: ${r.stderr}`);
    }
  });

  test('serve logs JSON with request ids, never credentials, and stops cleanly on SIGTERM', async () => {
    const dir = await tempDir('cli-serve');
    td.add(() => removeDir(dir));
    const port = await freePort();
    const deadUpstream = await freePort();
    const file = join(dir, 'tender.yaml');
    await writeFile(
      file,
      [
        'server: { host: 127.0.0.1, port: ' + port + ', shutdownTimeout: 5s }',
        'storage: { filesystem: { root: ./data } }',
        'ops: { port: 0 }',
        'upstreams:',
        '  hub:',
        `    url: http://127.0.0.1:${deadUpstream}`,
        '    username: robot',
        '    password: hunter2-very-secret',
        '    retries: 0',
        '',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [cli, 'serve', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    td.add(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    await waitFor('tender to listen', async () => out.includes('tender listening'), 15_000);
    const base = `http://127.0.0.1:${port}`;
    const ok = await fetch(`${base}/v2/`, { headers: { 'X-Request-Id': 'req-abc' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-request-id'), 'req-abc');
    const failed = await fetch(`${base}/v2/library/nginx/manifests/latest`);
    assert.equal(failed.status, 502);
    await failed.arrayBuffer();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(lines.some((l) => l.reqId === 'req-abc' && l.msg === 'request' && l.status === 200));
    assert.ok(lines.some((l) => l.msg === 'tender stopped'));
    assert.ok(!out.includes('hunter2-very-secret'), 'the password never reaches the log');
  });
});
