import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bearerChallenge, parseWwwAuthenticate } from '../src/upstream/challenge.ts';

void describe('parseWwwAuthenticate', () => {
  void it('parses a Docker Hub Bearer challenge', () => {
    const header =
      'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"';
    assert.deepEqual(parseWwwAuthenticate(header), [
      {
        scheme: 'bearer',
        params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/alpine:pull' },
      },
    ]);
  });

  void it('parses Basic and lower-cases scheme and parameter names', () => {
    assert.deepEqual(parseWwwAuthenticate('BASIC Realm="Registry Realm", charset="UTF-8"'), [
      { scheme: 'basic', params: { realm: 'Registry Realm', charset: 'UTF-8' } },
    ]);
  });

  void it('unescapes quoted strings and keeps commas inside them', () => {
    const [c] = parseWwwAuthenticate('Bearer realm="a\\"b\\\\c, d",scope="repository:x:pull,push"');
    assert.deepEqual(c?.params, { realm: 'a"b\\c, d', scope: 'repository:x:pull,push' });
  });

  void it('parses several challenges in one header', () => {
    const got = parseWwwAuthenticate('Basic realm="one", Bearer realm="https://t/token", service="svc" ,Negotiate');
    assert.deepEqual(
      got.map((c) => [c.scheme, c.params]),
      [
        ['basic', { realm: 'one' }],
        ['bearer', { realm: 'https://t/token', service: 'svc' }],
        ['negotiate', {}],
      ],
    );
  });

  void it('accepts unquoted values, spaces around = and empty list elements', () => {
    const [c] = parseWwwAuthenticate('Bearer  realm = https://auth.example.com/token , , service=reg:5000');
    assert.deepEqual(c?.params, { realm: 'https://auth.example.com/token', service: 'reg:5000' });
  });

  void it('parses a token68 challenge', () => {
    assert.deepEqual(parseWwwAuthenticate('Negotiate abc+/d==, Basic realm="x"'), [
      { scheme: 'negotiate', params: {}, token68: 'abc+/d==' },
      { scheme: 'basic', params: { realm: 'x' } },
    ]);
  });

  void it('tolerates garbage and unterminated quotes', () => {
    assert.deepEqual(parseWwwAuthenticate(''), []);
    assert.deepEqual(parseWwwAuthenticate('  ,  '), []);
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="unterminated'), [{ scheme: 'bearer', params: { realm: 'unterminated' } }]);
    assert.equal(parseWwwAuthenticate('"" Basic realm="r"').at(-1)?.scheme, 'basic');
  });
});

void describe('bearerChallenge', () => {
  void it('picks the first Bearer challenge with a realm', () => {
    const challenges = parseWwwAuthenticate('Basic realm="b", Bearer service="s", Bearer realm="r",service="s2"');
    assert.deepEqual(bearerChallenge(challenges), { realm: 'r', service: 's2', scope: undefined });
    assert.equal(bearerChallenge(parseWwwAuthenticate('Basic realm="b"')), undefined);
  });
});
