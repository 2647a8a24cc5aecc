import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { ConfigError, loadConfig } from '../src/config/load.ts';
import { configSchema } from '../src/config/schema.ts';

const repoConfig = path.join(import.meta.dirname, '..', 'config');

let dir: string;
before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tender-config-'));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function yamlFile(name: string, text: string): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, text);
  return file;
}

function problems(run: () => unknown): string[] {
  try {
    run();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.message, err.problems.join('\n'));
    return [...err.problems];
  }
  assert.fail('expected a ConfigError');
}

void describe('loadConfig', () => {
  void test('defaults, with the data root resolved against the working directory', () => {
    const config = loadConfig({});
    const defaults = configSchema.parse({});
    assert.deepEqual(config, { ...defaults, storage: { ...defaults.storage, filesystem: { root: path.resolve('data') } } });
    assert.equal(config.server.port, 5000);
    assert.equal(config.upstreams.hub?.tagTtl, 300_000);
    assert.equal(config.proxy.maxManifestSize, 4 * 1024 * 1024);
  });

  void test('a file, with durations, sizes and relative paths', async () => {
    const file = await yamlFile(
      'file.yaml',
      [
        'server:',
        '  port: 6000',
        '  shutdownTimeout: 1h30m',
        '  tls: { cert: tls/c.pem, key: /abs/k.pem }',
        'storage: { filesystem: { root: ../elsewhere } }',
        'proxy: { maxManifestSize: 1.5MiB, defaultUpstream: "" }',
        'upstreams:',
        '  ghcr:',
        '    url: https://ghcr.io',
        '    tagTtl: 90s',
        '    ca: certs/ca.pem',
        '    timeouts: { idle: 2500 }',
        '  inline:',
        '    url: http://127.0.0.1:5001',
        '    ca: "-----BEGIN CERTIFICATE-----\\nMIIB\\n-----END CERTIFICATE-----"',
      ].join('\n'),
    );
    const config = loadConfig({ file, env: {} });
    assert.equal(config.server.port, 6000);
    assert.equal(config.server.shutdownTimeout, 5_400_000);
    assert.deepEqual(config.server.tls, { cert: path.join(dir, 'tls/c.pem'), key: '/abs/k.pem' });
    assert.equal(config.storage.filesystem.root, path.resolve(dir, '../elsewhere'));
    assert.equal(config.proxy.maxManifestSize, 1_572_864);
    assert.equal(config.proxy.defaultUpstream, '');
    assert.deepEqual(Object.keys(config.upstreams), ['ghcr', 'inline'], 'upstreams in the file replace the default hub');
    const ghcr = config.upstreams.ghcr!;
    assert.equal(ghcr.tagTtl, 90_000);
    assert.equal(ghcr.tagListTtl, 300_000);
    assert.deepEqual(ghcr.timeouts, { connect: 10_000, response: 30_000, idle: 2500, blob: 3_600_000 });
    assert.equal(ghcr.ca, path.join(dir, 'certs/ca.pem'));
    assert.ok(config.upstreams.inline?.ca?.startsWith('-----BEGIN CERTIFICATE-----'), 'an inline PEM is not a path');
  });

  void test('environment overrides follow the config path', async () => {
    const file = await yamlFile('env.yaml', 'server:\n  port: 6000\nlog:\n  level: warn\n');
    const config = loadConfig({
      file,
      env: {
        TENDER_SERVER__PORT: '5001',
        TENDER_server__shutdown_timeout: '1m',
        TENDER_META__DRIVER: 'redis',
        TENDER_META__REDIS__URL: 'redis://127.0.0.1:6380/2',
        TENDER_UPSTREAMS__HUB__URL: 'https://mirror.example',
        TENDER_UPSTREAMS__HUB__ALIASES: '[docker.io]',
        TENDER_UPSTREAMS__HUB__INSECURESKIPVERIFY: 'true',
        TENDER_UPSTREAMS__HUB__PASSWORD: '#not: yaml, [kept] verbatim',
        TENDER_UPSTREAMS__HUB__TIMEOUTS__IDLE: '2m',
        TENDER_UPSTREAMS__MY_REG__URL: 'https://my.example',
        TENDER_UPSTREAMS__MY_REG__CONCURRENCY: '4',
        TENDER_CONFIG: '/ignored/by/loadConfig.yaml',
        OTHER: 'x',
      },
    });
    assert.equal(config.server.port, 5001);
    assert.equal(config.server.shutdownTimeout, 60_000);
    assert.equal(config.log.level, 'warn', 'file values without an override stay');
    assert.equal(config.meta.driver, 'redis');
    assert.equal(config.meta.redis.url, 'redis://127.0.0.1:6380/2');
    const hub = config.upstreams.hub!;
    assert.equal(hub.url, 'https://mirror.example');
    assert.deepEqual(hub.aliases, ['docker.io']);
    assert.equal(hub.insecureSkipVerify, true);
    assert.equal(hub.password, '#not: yaml, [kept] verbatim');
    assert.equal(hub.timeouts.idle, 120_000);
    assert.equal(hub.dockerHub, true, 'the default hub is extended, not replaced');
    assert.equal(config.upstreams['my-reg']?.concurrency, 4);
  });

  void test('every bad key is reported, each with its source', async () => {
    const file = await yamlFile(
      'bad.yaml',
      [
        'server:',
        '  port: http',
        '  prot: 5000',
        'meta:',
        '  driver: postgres',
        'proxy:',
        '  maxManifestSize: lots',
        'upstreams:',
        '  hub:',
        '    url: ftp://x',
        '    tagTtl: soon',
        '  Bad_Name:',
        '    url: https://x.example',
        'tls: {}',
      ].join('\n'),
    );
    const found = problems(() =>
      loadConfig({
        file,
        env: {
          TENDER_UPSTREAMS__HUB__RETRIES: 'many',
          TENDER_SERVR__PORT: '1',
          TENDER_UPSTREAMS__NEW__ALIASES: '[new.example]',
          TENDER_LOG__LEVEL: 'loud',
          TENDER_UPSTREAMS__HUB__CONCURRENCY: '[unclosed',
          TENDER_SERVER__: 'x',
        },
      }),
    );
    const expected = [
      /^server\.port: .*expected number.*\(from .*bad\.yaml:2\)$/,
      /^server\.prot: unknown setting \(from .*bad\.yaml:3\)$/,
      /^meta\.driver: .*\(from .*bad\.yaml:5\)$/,
      /^proxy\.maxManifestSize: not a size: "lots".*\(from .*bad\.yaml:7\)$/,
      /^upstreams\.hub\.url: .*\(from .*bad\.yaml:10\)$/,
      /^upstreams\.hub\.tagTtl: not a duration: "soon".*\(from .*bad\.yaml:11\)$/,
      /^upstreams\.hub\.retries: .*\(from env TENDER_UPSTREAMS__HUB__RETRIES\)$/,
      /^upstreams\.Bad_Name: upstream names are lower-case.*\(from .*bad\.yaml:12\)$/,
      /^upstreams\.new\.url: .*\(from env TENDER_UPSTREAMS__NEW__ALIASES\)$/,
      /^tls: unknown setting \(from .*bad\.yaml:14\)$/,
      /^servr: unknown setting \(from env TENDER_SERVR__PORT\)$/,
      /^log\.level: .*expected one of.*\(from env TENDER_LOG__LEVEL\)$/,
      /^upstreams\.hub\.concurrency: not a valid YAML value.*\(from env TENDER_UPSTREAMS__HUB__CONCURRENCY\)$/,
      /^TENDER_SERVER__: not a setting/,
    ];
    for (const pattern of expected) {
      assert.ok(
        found.some((line) => pattern.test(line)),
        `no line matches ${pattern}:\n${found.join('\n')}`,
      );
    }
    assert.equal(found.length, expected.length, found.join('\n'));
  });

  void test('unknown keys are rejected, in the file and in the environment', async () => {
    const file = await yamlFile('unknown.yaml', 'server:\n  host: 127.0.0.1\n  hots: x\n');
    assert.deepEqual(problems(() => loadConfig({ file })), [`server.hots: unknown setting (from ${file}:3)`]);
    assert.deepEqual(problems(() => loadConfig({ env: { TENDER_STORAGE__FILESYSTEM__ROOOT: '/x' } })), [
      'storage.filesystem.rooot: unknown setting (from env TENDER_STORAGE__FILESYSTEM__ROOOT)',
    ]);
  });

  void test('durations and sizes', () => {
    const load = (env: Record<string, string>) => loadConfig({ env });
    assert.equal(load({ TENDER_SERVER__SHUTDOWN_TIMEOUT: '1500ms' }).server.shutdownTimeout, 1500);
    assert.equal(load({ TENDER_SERVER__SHUTDOWN_TIMEOUT: '2500' }).server.shutdownTimeout, 2500);
    assert.equal(load({ TENDER_UPSTREAMS__HUB__TAGTTL: '7d' }).upstreams.hub?.tagTtl, 604_800_000);
    assert.equal(load({ TENDER_UPSTREAMS__HUB__TAGTTL: '1h30m' }).upstreams.hub?.tagTtl, 5_400_000);
    assert.equal(load({ TENDER_PROXY__MAX_MANIFEST_SIZE: '512KiB' }).proxy.maxManifestSize, 524_288);
    assert.equal(load({ TENDER_PROXY__MAX_MANIFEST_SIZE: '10MB' }).proxy.maxManifestSize, 10_000_000);
    assert.equal(load({ TENDER_PROXY__MAX_MANIFEST_SIZE: '2048' }).proxy.maxManifestSize, 2048);
    assert.match(problems(() => load({ TENDER_SERVER__SHUTDOWN_TIMEOUT: '5 minutes' }))[0]!, /not a duration/);
    assert.match(problems(() => load({ TENDER_PROXY__MAX_MANIFEST_SIZE: '4 parsecs' }))[0]!, /not a size/);
    assert.match(problems(() => load({ TENDER_SERVER__SHUTDOWN_TIMEOUT: 'true' }))[0]!, /shutdownTimeout/);
  });

  void test('unreadable and malformed files are ConfigErrors naming the file', async () => {
    const missing = path.join(dir, 'missing.yaml');
    assert.match(problems(() => loadConfig({ file: missing }))[0]!, /missing\.yaml: cannot read/);
    const broken = await yamlFile('broken.yaml', 'server:\n  port: 1\n  port: 2\n');
    assert.match(problems(() => loadConfig({ file: broken }))[0]!, /broken\.yaml: Map keys must be unique at line 3/);
    const list = await yamlFile('list.yaml', '- a\n- b\n');
    assert.match(problems(() => loadConfig({ file: list }))[0]!, /top level must be a mapping/);
    const empty = await yamlFile('empty.yaml', '# nothing set\n');
    assert.equal(loadConfig({ file: empty }).server.port, 5000);
  });
});

void describe('sample configs', () => {
  const sample = path.join(repoConfig, 'tender.yaml');

  void test('config/tender.yaml validates and holds exactly the schema defaults', () => {
    const raw: unknown = parseYaml(readFileSync(sample, 'utf8'));
    assert.deepEqual(configSchema.parse(raw), configSchema.parse({}));
    const loaded = loadConfig({ file: sample });
    assert.equal(loaded.storage.filesystem.root, path.join(repoConfig, 'data'));
  });

  void test('config/tender.yaml shows every option', () => {
    const text = readFileSync(sample, 'utf8');
    const raw: unknown = parseYaml(text);
    const missing = leafPaths(configSchema.parse({})).filter((p) => valueAt(raw, p) === undefined);
    assert.deepEqual(missing, [], 'options with defaults must appear in the sample');
    for (const optional of ['tls:', 'cert:', 'key:', 'username:', 'password:', 'ca:']) {
      assert.match(text, new RegExp(`^\\s*#\\s*${optional}`, 'm'), `optional ${optional} is shown commented out`);
    }
  });

  void test('config/example-multi.yaml validates', () => {
    const config = loadConfig({ file: path.join(repoConfig, 'example-multi.yaml'), env: {} });
    assert.deepEqual(Object.keys(config.upstreams), ['hub', 'ghcr', 'quay', 'k8s']);
    assert.ok(config.upstreams.hub?.aliases.includes('docker.io'));
    assert.deepEqual(config.upstreams.ghcr?.aliases, ['ghcr.io']);
    assert.deepEqual(config.upstreams.quay?.aliases, ['quay.io']);
    assert.equal(config.upstreams.k8s?.url, 'https://registry.k8s.io');
    assert.equal(config.server.tls, undefined);
  });
});

function leafPaths(value: unknown, at: string[] = []): string[][] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return [at];
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, [...at, k]));
}

function valueAt(value: unknown, at: string[]): unknown {
  let v = value;
  for (const k of at) v = typeof v === 'object' && v !== null ? (v as Record<string, unknown>)[k] : undefined;
  return v;
}
