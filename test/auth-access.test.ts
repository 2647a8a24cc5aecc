/** Access policy and repository patterns: pure functions, no I/O. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { authorize, type Action, type Principal } from '../src/auth/access.ts';
import { compilePattern, matchesPattern } from '../src/auth/patterns.ts';
import { configSchema, type AccessRule } from '../src/config/schema.ts';

const alice: Principal = { name: 'alice' };
const bob: Principal = { name: 'bob' };
const ci: Principal = { name: 'ci-bot' };
const anon: Principal = undefined;

function rule(repositories: string, subjects: Partial<Record<Action, string[]>>): AccessRule {
  return { repositories, pull: [], push: [], delete: [], ...subjects };
}

describe('patterns', () => {
  test('* stays within one path component', () => {
    assert.ok(matchesPattern('acme/app', 'acme/*'));
    assert.ok(matchesPattern('acme/', 'acme/*'));
    assert.ok(!matchesPattern('acme/a/b', 'acme/*'));
    assert.ok(!matchesPattern('acme', 'acme/*'));
    assert.ok(matchesPattern('team-a/app', 'team-*/app'));
    assert.ok(!matchesPattern('team/x/app', 'team*/app'));
  });

  test('** crosses path components', () => {
    assert.ok(matchesPattern('acme/app', 'acme/**'));
    assert.ok(matchesPattern('acme/a/b/c', 'acme/**'));
    assert.ok(!matchesPattern('acme', 'acme/**'));
    assert.ok(!matchesPattern('acmex/app', 'acme/**'));
    assert.ok(matchesPattern('x/y/app', '**/app'));
    for (const name of ['a', 'hub/library/nginx', 'acme/a/b']) assert.ok(matchesPattern(name, '**'));
  });

  test('everything else is literal, and the whole name must match', () => {
    assert.ok(matchesPattern('a.b/c+d', 'a.b/c+d'));
    assert.ok(!matchesPattern('aXb/c+d', 'a.b/c+d'));
    assert.ok(!matchesPattern('a.b/cd', 'a.b/c+d'));
    assert.ok(matchesPattern('x(y)[z]$^|?', 'x(y)[z]$^|?'));
    assert.ok(!matchesPattern('acme/app-extra', 'acme/app'));
    assert.ok(!matchesPattern('my/acme/app', 'acme/app'));
    assert.ok(!matchesPattern('acme/app\n', 'acme/app'));
  });

  test('compiled patterns are cached', () => {
    assert.equal(compilePattern('acme/**'), compilePattern('acme/**'));
    assert.equal(compilePattern('a/*').source, '^a\\/[^/]*$');
  });
});

describe('authorize', () => {
  const groups = { admins: ['alice'], builders: ['ci-bot', 'bob'] };

  test('$all covers everyone, anonymous included', () => {
    const rules = [rule('**', { pull: ['$all'] })];
    for (const p of [anon, alice]) assert.equal(authorize(p, 'x/y', 'pull', rules, {}).allowed, true);
  });

  test('$anonymous covers only clients without credentials', () => {
    const rules = [rule('**', { pull: ['$anonymous'] })];
    assert.equal(authorize(anon, 'x', 'pull', rules, {}).allowed, true);
    assert.equal(authorize(alice, 'x', 'pull', rules, {}).allowed, false);
  });

  test('$authenticated covers any logged-in user', () => {
    const rules = [rule('**', { push: ['$authenticated'] })];
    assert.equal(authorize(anon, 'x', 'push', rules, {}).allowed, false);
    assert.equal(authorize(alice, 'x', 'push', rules, {}).allowed, true);
    assert.equal(authorize(bob, 'x', 'push', rules, {}).allowed, true);
  });

  test('a user name covers that user only', () => {
    const rules = [rule('**', { push: ['ci-bot'] })];
    assert.equal(authorize(ci, 'acme/app', 'push', rules, {}).allowed, true);
    assert.equal(authorize(alice, 'acme/app', 'push', rules, {}).allowed, false);
    assert.equal(authorize(anon, 'acme/app', 'push', rules, {}).allowed, false);
  });

  test('a group name covers its members', () => {
    const rules = [rule('**', { delete: ['admins'], push: ['builders'] })];
    assert.equal(authorize(alice, 'x', 'delete', rules, groups).allowed, true);
    assert.equal(authorize(bob, 'x', 'delete', rules, groups).allowed, false);
    assert.equal(authorize(bob, 'x', 'push', rules, groups).allowed, true);
    assert.equal(authorize(ci, 'x', 'push', rules, groups).allowed, true);
    assert.equal(authorize(alice, 'x', 'push', rules, groups).allowed, false);
    assert.equal(authorize(anon, 'x', 'delete', rules, groups).allowed, false);
  });

  test('unknown groups, $-names and Object.prototype keys cover nobody', () => {
    const rules = [rule('**', { pull: ['nobody-group', '$admins', 'constructor', 'toString', '__proto__'] })];
    for (const p of [anon, alice]) assert.equal(authorize(p, 'x', 'pull', rules, groups).allowed, false);
    assert.equal(authorize({ name: '$admins' }, 'x', 'pull', rules, groups).allowed, false);
  });

  test('actions are separate', () => {
    const rules = [rule('**', { pull: ['$all'] })];
    assert.equal(authorize(alice, 'x', 'pull', rules, {}).allowed, true);
    assert.equal(authorize(alice, 'x', 'push', rules, {}).allowed, false);
    assert.equal(authorize(alice, 'x', 'delete', rules, {}).allowed, false);
  });

  test('the first matching rule decides, even when a later one would allow', () => {
    const rules = [
      rule('acme/secret/**', { pull: ['admins'] }),
      rule('acme/**', { pull: ['$authenticated'], push: ['ci-bot'] }),
      rule('**', { pull: ['$all'], push: ['$authenticated'] }),
    ];
    const secret = authorize(bob, 'acme/secret/keys', 'pull', rules, groups);
    assert.deepEqual(secret, { allowed: false, rule: rules[0] });
    assert.deepEqual(authorize(alice, 'acme/secret/keys', 'pull', rules, groups), { allowed: true, rule: rules[0] });
    assert.deepEqual(authorize(anon, 'acme/app', 'pull', rules, groups), { allowed: false, rule: rules[1] });
    assert.deepEqual(authorize(bob, 'acme/app', 'push', rules, groups), { allowed: false, rule: rules[1] });
    assert.deepEqual(authorize(ci, 'acme/app', 'push', rules, groups), { allowed: true, rule: rules[1] });
    assert.deepEqual(authorize(anon, 'hub/library/nginx', 'pull', rules, groups), { allowed: true, rule: rules[2] });
    assert.deepEqual(authorize(anon, 'acme', 'pull', rules, groups), { allowed: true, rule: rules[2] }, 'acme/** does not match acme');
  });

  test('no matching rule, or no rules, denies', () => {
    const rules = [rule('acme/*', { pull: ['$all'] })];
    assert.deepEqual(authorize(alice, 'acme/a/b', 'pull', rules, {}), { allowed: false, rule: undefined });
    assert.deepEqual(authorize(alice, 'other', 'pull', rules, {}), { allowed: false, rule: undefined });
    assert.deepEqual(authorize(alice, 'x', 'pull', [], {}), { allowed: false, rule: undefined });
  });

  test('the default rules: anyone pulls, logged-in users push and delete', () => {
    const { access } = configSchema.parse({});
    assert.equal(authorize(anon, 'hub/library/alpine', 'pull', access, {}).allowed, true);
    assert.equal(authorize(anon, 'acme/app', 'push', access, {}).allowed, false);
    assert.equal(authorize(alice, 'acme/app', 'push', access, {}).allowed, true);
    assert.equal(authorize(alice, 'acme/app', 'delete', access, {}).allowed, true);
  });
});
