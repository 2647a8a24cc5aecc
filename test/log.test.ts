import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger, redactUrl } from '../src/log.ts';

function capture() {
  const lines: string[] = [];
  return { lines, destination: { write: (msg: string) => void lines.push(msg) } };
}

void test('passwords, tokens and Authorization headers never reach the log', () => {
  const { lines, destination } = capture();
  const logger = createLogger({ level: 'debug', destination });
  const secrets = ['hunter2-password', 'Bearer eyJ-secret-token', 'Basic dXNlcjpzZWNyZXQ=', 'tok-123', 'cookie-secret'];
  logger.info({ req: { method: 'GET', headers: { authorization: secrets[1], 'user-agent': 'docker/27' } } }, 'request');
  logger.info({ headers: { authorization: secrets[2], cookie: secrets[4] } }, 'upstream request');
  logger.info({ upstream: { name: 'hub', username: 'me', password: secrets[0] } }, 'upstream');
  logger.info({ config: { upstreams: { hub: { url: 'https://registry-1.docker.io', password: secrets[0] } } } }, 'config');
  logger.debug({ auth: { token: secrets[3] }, password: secrets[0] }, 'token cached');
  logger.child({ upstream: 'hub' }).warn({ response: { headers: { authorization: secrets[1] } } }, 'child');
  const output = lines.join('');
  for (const secret of secrets) assert.ok(!output.includes(secret), `${secret} leaked:\n${output}`);
  assert.equal(lines.length, 6);
  const first = JSON.parse(lines[0]!) as { req: { headers: Record<string, string> }; level: number; msg: string };
  assert.equal(first.req.headers.authorization, '[Redacted]');
  assert.equal(first.req.headers['user-agent'], 'docker/27', 'other fields are kept');
  assert.equal(first.msg, 'request');
  assert.ok(output.includes('"username":"me"'));
});

void test('the level is honoured', () => {
  const { lines, destination } = capture();
  const logger = createLogger({ level: 'warn', destination });
  logger.info('hidden');
  logger.warn('shown');
  assert.equal(lines.length, 1);
  assert.equal((JSON.parse(lines[0]!) as { msg: string }).msg, 'shown');
});

void test('redactUrl strips userinfo and token-like query values', () => {
  assert.equal(redactUrl('https://user:pass@registry.example/v2/'), 'https://registry.example/v2/');
  assert.equal(
    redactUrl('https://auth.docker.io/token?service=registry.docker.io&scope=repository:library/alpine:pull&access_token=abc'),
    'https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Falpine%3Apull&access_token=REDACTED',
  );
  const s3 = redactUrl(
    'https://bucket.s3.amazonaws.com/blob?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=deadbeef&X-Amz-Security-Token=tok',
  );
  for (const secret of ['AKIA', 'deadbeef', '=tok']) assert.ok(!s3.includes(secret), s3);
  assert.ok(s3.includes('X-Amz-Algorithm=AWS4-HMAC-SHA256'));
  assert.equal(redactUrl('https://cdn.example/b?Signature=x&Key-Pair-Id=y&Expires=1'), 'https://cdn.example/b?Signature=REDACTED&Key-Pair-Id=REDACTED&Expires=1');
  assert.equal(redactUrl('https://plain.example/v2/library/alpine/blobs/sha256:ab'), 'https://plain.example/v2/library/alpine/blobs/sha256:ab');
  assert.equal(redactUrl('not a url //user:pw@host/x?token=1'), 'not a url //host/x');
});
