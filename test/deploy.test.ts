/**
 * The shipping artifacts under deploy/, checked without a container engine: the
 * Dockerfile parsed (instructions, COPY sources, build-context filter), compose and
 * Kubernetes YAML parsed and their key fields asserted, the container config validated by
 * tender's own check-config, the systemd unit verified by systemd-analyze, and the image's
 * ENTRYPOINT + CMD run as they are, outside a container, in a copy of the image's /app
 * (production dependencies only), probed with the image's HEALTHCHECK command and
 * stopped with SIGTERM.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { cp, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { freePort, removeDir, run, skipUnlessTools, tempDir, teardown, waitFor } from './helpers/tools.ts';

const repo = resolve(import.meta.dirname, '..');
const deploy = join(repo, 'deploy');
const cli = join(repo, 'src', 'cli', 'main.ts');
const containerConfig = join(deploy, 'tender.container.yaml');

type Obj = Record<string, unknown>;

function obj(v: unknown, what: string): Obj {
  assert.ok(v !== null && typeof v === 'object' && !Array.isArray(v), `${what} is a mapping`);
  return v as Obj;
}
function arr(v: unknown, what: string): unknown[] {
  assert.ok(Array.isArray(v), `${what} is a list`);
  return v;
}

// ---------------------------------------------------------------- Dockerfile parsing

interface Instruction {
  keyword: string;
  /** --name=value flags before the arguments. */
  flags: Record<string, string>;
  /** The arguments as written (continuations joined). */
  args: string;
  /** The stage (0-based FROM index) it belongs to; -1 before the first FROM. */
  stage: number;
}

/** A small Dockerfile parser: comments, line continuations, leading --flags. */
function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let buf = '';
  let stage = -1;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!buf && (line === '' || line.startsWith('#'))) continue;
    if (buf && line.startsWith('#')) continue; // comments inside a continued instruction
    if (line.endsWith('\\')) {
      buf += line.slice(0, -1) + ' ';
      continue;
    }
    buf += line;
    const m = /^(\S+)\s*(.*)$/s.exec(buf.trim());
    buf = '';
    if (!m) continue;
    const keyword = m[1]!.toUpperCase();
    let rest = m[2]!;
    const flags: Record<string, string> = {};
    for (;;) {
      const f = /^--([a-z-]+)(?:=(\S+))?\s*/.exec(rest);
      if (!f) break;
      flags[f[1]!] = f[2] ?? 'true';
      rest = rest.slice(f[0].length);
    }
    if (keyword === 'FROM') stage++;
    out.push({ keyword, flags, args: rest.trim(), stage });
  }
  assert.equal(buf, '', 'the Dockerfile does not end inside a continued line');
  return out;
}

/** The exec (JSON array) form of ENTRYPOINT / CMD / HEALTHCHECK CMD; fails on the shell form. */
function execForm(args: string, what: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(args);
  } catch {
    assert.fail(`${what} uses the exec (JSON array) form: ${args}`);
  }
  assert.ok(Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string'), `${what} is a JSON array of strings`);
  return v as string[];
}

/** Matches a .dockerignore pattern (Go filepath.Match plus **) against a path or any of its parents. */
function ignoreMatches(pattern: string, path: string): boolean {
  const rx = new RegExp(
    '^' +
      pattern
        .replace(/^\/+|\/+$/g, '')
        .split('')
        .map((c, i, a) => {
          if (c === '*') return a[i + 1] === '*' ? '' : a[i - 1] === '*' ? '.*' : '[^/]*';
          if (c === '?') return '[^/]';
          return c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
        })
        .join('') +
      '$',
  );
  const parts = path.split('/');
  for (let n = 1; n <= parts.length; n++) if (rx.test(parts.slice(0, n).join('/'))) return true;
  return false;
}

/** Whether the build context keeps `path` under the ignore file's rules (the last matching rule wins). */
function inContext(ignoreRules: string[], path: string): boolean {
  let kept = true;
  for (const rule of ignoreRules) {
    const negated = rule.startsWith('!');
    if (ignoreMatches(negated ? rule.slice(1) : rule, path)) kept = negated;
  }
  return kept;
}

const dockerfile = parseDockerfile(readFileSync(join(deploy, 'Dockerfile'), 'utf8'));
const finalStage = Math.max(...dockerfile.map((i) => i.stage));
const inFinal = (keyword: string) => dockerfile.filter((i) => i.stage === finalStage && i.keyword === keyword);
const lastOf = (keyword: string): Instruction => {
  const all = inFinal(keyword);
  assert.ok(all.length > 0, `the runtime stage has ${keyword}`);
  return all[all.length - 1]!;
};
// Read inside the tests (not at load), so a malformed instruction fails its test, not the file.
const entrypoint = () => execForm(lastOf('ENTRYPOINT').args, 'ENTRYPOINT');
const cmd = () => execForm(lastOf('CMD').args, 'CMD');
const healthcheck = () => {
  const h = lastOf('HEALTHCHECK');
  assert.match(h.args, /^CMD\s+/, 'HEALTHCHECK runs a command');
  return { flags: h.flags, command: execForm(h.args.replace(/^CMD\s+/, ''), 'HEALTHCHECK CMD') };
};

/** The image's `node -e SNIPPET` health command, run with this machine's node. */
function runHealthcheck(command: string[], env: NodeJS.ProcessEnv = {}) {
  assert.equal(command[0], 'node', 'the health command runs node (no curl in slim images)');
  return run(process.execPath, command.slice(1), { allowFail: true, timeoutMs: 15_000, env });
}

function durationSeconds(v: unknown): number {
  const m = /^(\d+)(s|m)?$/.exec(String(v));
  assert.ok(m, `a duration: ${String(v)}`);
  return Number(m[1]) * (m[2] === 'm' ? 60 : 1);
}

describe('deploy/Dockerfile', () => {
  test('two stages on a current Node LTS slim image; production dependencies only', () => {
    const froms = dockerfile.filter((i) => i.keyword === 'FROM');
    assert.ok(froms.length >= 2, 'multi-stage: at least two FROM');
    const argDefaults = new Map(
      dockerfile
        .filter((i) => i.keyword === 'ARG' && i.stage === -1)
        .map((i) => i.args.split('=') as [string, string | undefined])
        .map(([k, v]) => [k, v ?? ''] as const),
    );
    for (const f of froms) {
      const image = f.args.split(/\s+/)[0]!.replace(/^\$\{?(\w+)\}?$/, (_, name: string) => argDefaults.get(name) ?? '');
      assert.match(image, /^node:24[-.\w]*-slim$/, `base image ${f.args} is node 24 slim`);
    }
    assert.match(froms[0]!.args, /\bAS\s+build$/i, 'the first stage is named build');
    const build = dockerfile.filter((i) => i.stage === 0 && i.keyword === 'RUN').map((i) => i.args).join('\n');
    assert.match(build, /npm ci\b[^\n]*--omit=dev/, 'the build stage runs npm ci --omit=dev');
    const fromBuild = inFinal('COPY').filter((c) => c.flags.from);
    assert.ok(fromBuild.some((c) => c.flags.from === 'build' && /node_modules/.test(c.args)), 'node_modules comes from the build stage');
  });

  test('nothing in src/ imports a package that is not a production dependency', () => {
    const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { dependencies: Obj; devDependencies: Obj };
    const prod = new Set(Object.keys(pkg.dependencies));
    const files = (readdirSync(join(repo, 'src'), { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
    assert.ok(files.length > 10);
    const offenders: string[] = [];
    for (const f of files) {
      const text = readFileSync(join(repo, 'src', f), 'utf8');
      const specs = [
        ...text.matchAll(/^\s*(?:import|export)\s[^;]*?\sfrom\s+['"]([^'"]+)['"]/gm), // import x from '...', export ... from '...'
        ...text.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm), // import '...'
        ...text.matchAll(/\bimport\s*\(\s*['"]([^'"]+)['"]/g), // import('...')
      ].map((m) => m[1]!);
      assert.ok(specs.length > 0 || !/\bimport\b/.test(text), `${f}: imports found`);
      for (const spec of specs) {
        if (spec.startsWith('.') || spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        if (!prod.has(name)) offenders.push(`${f}: ${spec}`);
      }
    }
    assert.deepEqual(offenders, []);
  });

  test('runs as uid 10001 with /var/lib/tender as an owned VOLUME; exposes 5000; stops on SIGTERM', () => {
    const user = lastOf('USER').args;
    assert.match(user, /^10001(:10001)?$/, `USER is numeric and non-root (runAsNonRoot can check it): ${user}`);
    const volumes = inFinal('VOLUME').flatMap((v) => (v.args.startsWith('[') ? execForm(v.args, 'VOLUME') : v.args.split(/\s+/)));
    assert.ok(volumes.includes('/var/lib/tender'), 'VOLUME /var/lib/tender');
    const setup = inFinal('RUN').map((r) => r.args).join('\n');
    assert.match(setup, /--uid 10001/, 'the user is created with uid 10001');
    assert.match(setup, /chown [^\n]*tender[^\n]* \/var\/lib\/tender/, 'the data directory is owned by the user');
    const volumeAt = dockerfile.indexOf(inFinal('VOLUME')[0]!);
    const chownAt = dockerfile.findIndex((i) => i.keyword === 'RUN' && /chown .*\/var\/lib\/tender/.test(i.args));
    assert.ok(chownAt < volumeAt, 'ownership is set before VOLUME (later changes to a volume path are discarded)');
    assert.ok(inFinal('EXPOSE').some((e) => e.args.split(/\s+/).includes('5000')), 'EXPOSE 5000');
    assert.equal(lastOf('STOPSIGNAL').args, 'SIGTERM');
    assert.equal(lastOf('WORKDIR').args, '/app');
    assert.deepEqual(entrypoint(), ['node', 'src/cli/main.ts']);
    assert.deepEqual(cmd(), ['serve', '--config', '/etc/tender/tender.yaml']);
    assert.ok(
      inFinal('COPY').some((c) => c.args === 'deploy/tender.container.yaml /etc/tender/tender.yaml'),
      'the default config is installed at /etc/tender/tender.yaml',
    );
    for (const flag of ['interval', 'timeout', 'start-period', 'retries']) assert.ok(healthcheck().flags[flag], `HEALTHCHECK --${flag}`);
    assert.match(healthcheck().command.join(' '), /\/v2\//);
  });

  test('every COPY source exists in the repository and is kept by Dockerfile.dockerignore', () => {
    const rules = readFileSync(join(deploy, 'Dockerfile.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    const sources = dockerfile
      .filter((i) => (i.keyword === 'COPY' || i.keyword === 'ADD') && !i.flags.from)
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    assert.ok(sources.length >= 4, `COPY sources: ${sources.join(' ')}`);
    for (const src of sources) {
      const path = src.replace(/^\.\/|\/$/g, '');
      assert.ok(existsSync(join(repo, path)), `COPY source ${src} exists in the repository (the build context)`);
      assert.ok(inContext(rules, path), `COPY source ${src} is in the build context`);
      if (statSync(join(repo, path)).isDirectory()) {
        const files = (readdirSync(join(repo, path), { recursive: true }) as string[]).map((f) => `${path}/${f}`);
        const left = files.filter((f) => !inContext(rules, f));
        assert.deepEqual(left, [], `everything under ${src} is in the build context`);
      }
    }
    for (const excluded of ['node_modules/koa/package.json', '.git/HEAD', 'data/blobs', 'test/cli.test.ts', 'bench/run.ts']) {
      assert.ok(!inContext(rules, excluded), `${excluded} is left out of the build context`);
    }
    for (const copy of dockerfile.filter((i) => i.keyword === 'COPY' && i.flags.from)) {
      const stages = dockerfile.filter((i) => i.keyword === 'FROM').map((f) => /\bAS\s+(\S+)$/i.exec(f.args)?.[1]);
      assert.ok(stages.includes(copy.flags.from), `COPY --from=${copy.flags.from} names a stage`);
    }
  });
});

describe('deploy/tender.container.yaml', () => {
  test('tender check-config accepts it: 0.0.0.0:5000, data in /var/lib/tender, the rest defaults', async () => {
    const r = await run(process.execPath, [cli, 'check-config', '--config', containerConfig]);
    assert.equal(r.code, 0);
    const config = JSON.parse(r.stdout) as { server: Obj; storage: { filesystem: Obj }; meta: Obj };
    assert.equal(config.server.host, '0.0.0.0');
    assert.equal(config.server.port, 5000);
    assert.equal(config.server.shutdownTimeout, 30_000);
    assert.equal(config.storage.filesystem.root, '/var/lib/tender');
    assert.equal(config.meta.driver, 'memory');
  });
});

describe('deploy/compose.yaml', () => {
  const compose = obj(parseYaml(readFileSync(join(deploy, 'compose.yaml'), 'utf8')), 'compose.yaml');
  const services = obj(compose.services, 'services');
  const tender = obj(services.tender, 'services.tender');

  test('builds deploy/Dockerfile from the repository root, publishes 5000, restarts unless stopped', () => {
    const build = obj(tender.build, 'build');
    const context = resolve(deploy, String(build.context));
    assert.equal(context, repo, 'the build context is the repository root');
    assert.ok(existsSync(join(context, String(build.dockerfile))), 'the dockerfile exists in the context');
    assert.equal(resolve(context, String(build.dockerfile)), join(deploy, 'Dockerfile'));
    assert.ok(arr(tender.ports, 'ports').some((p) => String(p) === '5000:5000'), 'port 5000 published');
    assert.equal(tender.restart, 'unless-stopped');
    assert.equal(tender.healthcheck, undefined, "the image's HEALTHCHECK is inherited");
    assert.ok(durationSeconds(tender.stop_grace_period) > 30, 'stop_grace_period is longer than shutdownTimeout');
    assert.equal(services.redis, undefined, 'redis stays optional (commented out)');
  });

  test('a named volume for /var/lib/tender and the config mounted read-only', () => {
    const volumes = arr(tender.volumes, 'volumes').map(String);
    const data = volumes.find((v) => v.split(':')[1] === '/var/lib/tender');
    assert.ok(data, 'a volume at /var/lib/tender');
    const name = data.split(':')[0]!;
    assert.ok(!name.startsWith('.') && !name.startsWith('/'), 'it is a named volume');
    assert.ok(name in obj(compose.volumes, 'top-level volumes'), `volume ${name} is declared`);
    const config = volumes.find((v) => v.split(':')[1] === '/etc/tender/tender.yaml');
    assert.ok(config, 'the config is mounted at /etc/tender/tender.yaml');
    const [source, , mode] = config.split(':');
    assert.equal(mode, 'ro');
    assert.equal(resolve(deploy, source!), containerConfig);
  });
});

describe('deploy/kubernetes', () => {
  const dir = join(deploy, 'kubernetes');
  const docs = readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
        assert.deepEqual(d.errors, [], `${f} parses`);
        return { file: f, doc: obj(d.toJS(), f) };
      }),
    );
  const byKind = (kind: string) => {
    const found = docs.filter((d) => d.doc.kind === kind);
    assert.equal(found.length, 1, `one ${kind}`);
    return found[0]!.doc;
  };
  const sts = byKind('StatefulSet');
  const spec = obj(sts.spec, 'StatefulSet spec');
  const pod = obj(obj(spec.template, 'template').spec, 'pod spec');
  const container = obj(arr(pod.containers, 'containers')[0], 'container');
  const probeCommand = (name: string): string[] => {
    const probe = obj(container[name], name);
    assert.equal(probe.httpGet, undefined, `${name} is not httpGet (it would count 401 as a failure)`);
    if (probe.tcpSocket) return [];
    return arr(obj(probe.exec, `${name}.exec`).command, `${name} command`).map(String);
  };

  test('kustomization lists every manifest', () => {
    const k = obj(parseYaml(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')), 'kustomization');
    assert.deepEqual(
      arr(k.resources, 'resources').map(String).sort(),
      [...new Set(docs.map((d) => d.file))].sort(),
    );
  });

  test('a StatefulSet of one with a volume claim for /var/lib/tender, the image default command', () => {
    assert.equal(sts.apiVersion, 'apps/v1');
    assert.equal(spec.replicas, 1);
    const claim = obj(arr(spec.volumeClaimTemplates, 'volumeClaimTemplates')[0], 'claim');
    const claimName = obj(claim.metadata, 'claim metadata').name;
    const mounts = arr(container.volumeMounts, 'volumeMounts').map((m) => obj(m, 'mount'));
    assert.ok(mounts.some((m) => m.name === claimName && m.mountPath === '/var/lib/tender'), 'the claim is mounted at /var/lib/tender');
    assert.deepEqual(container.args, cmd(), "args are the image's CMD");
    assert.equal(container.command, undefined, "the image's ENTRYPOINT is kept");
    assert.ok(Number(pod.terminationGracePeriodSeconds) > 30, 'terminationGracePeriodSeconds exceeds shutdownTimeout');
    const labels = obj(obj(obj(spec.template, 'template').metadata, 'template metadata').labels, 'labels');
    assert.deepEqual(obj(spec.selector, 'selector').matchLabels, labels);
    const service = byKind('Service');
    assert.equal(spec.serviceName, obj(service.metadata, 'service metadata').name);
    const sspec = obj(service.spec, 'service spec');
    for (const [k, v] of Object.entries(obj(sspec.selector, 'service selector'))) assert.equal(labels[k], v);
    const ports = arr(container.ports, 'container ports').map((p) => obj(p, 'port'));
    const sport = obj(arr(sspec.ports, 'service ports')[0], 'service port');
    assert.equal(sport.port, 5000);
    assert.ok(ports.some((p) => p.containerPort === 5000 && (p.name === sport.targetPort || p.containerPort === sport.targetPort)));
  });

  test('the ConfigMap carries the container config and is mounted at /etc/tender', async () => {
    const cm = byKind('ConfigMap');
    const text = String(obj(cm.data, 'data')['tender.yaml']);
    assert.deepEqual(parseYaml(text), parseYaml(readFileSync(containerConfig, 'utf8')), 'same as deploy/tender.container.yaml');
    const volumes = arr(pod.volumes, 'volumes').map((v) => obj(v, 'volume'));
    const cfgVolume = volumes.find((v) => v.configMap && obj(v.configMap, 'configMap').name === obj(cm.metadata, 'cm metadata').name);
    assert.ok(cfgVolume, 'a volume from the ConfigMap');
    const mounts = arr(container.volumeMounts, 'volumeMounts').map((m) => obj(m, 'mount'));
    assert.ok(mounts.some((m) => m.name === cfgVolume.name && m.mountPath === '/etc/tender' && m.readOnly === true));
    const dir = await tempDir('deploy-cm');
    try {
      await writeFile(join(dir, 'tender.yaml'), text);
      await run(process.execPath, [cli, 'check-config', '--config', join(dir, 'tender.yaml')]);
    } finally {
      await removeDir(dir);
    }
  });

  test('non-root, read-only root filesystem with an emptyDir /tmp, 512Mi memory limit, exec or TCP probes', () => {
    const psc = obj(pod.securityContext, 'pod securityContext');
    assert.equal(psc.runAsNonRoot, true);
    assert.equal(psc.runAsUser, 10001);
    assert.equal(psc.fsGroup, 10001);
    const csc = obj(container.securityContext, 'container securityContext');
    assert.equal(csc.readOnlyRootFilesystem, true);
    assert.equal(csc.allowPrivilegeEscalation, false);
    assert.deepEqual(obj(csc.capabilities, 'capabilities').drop, ['ALL']);
    const volumes = arr(pod.volumes, 'volumes').map((v) => obj(v, 'volume'));
    const mounts = arr(container.volumeMounts, 'volumeMounts').map((m) => obj(m, 'mount'));
    const tmp = mounts.find((m) => m.mountPath === '/tmp');
    assert.ok(tmp && volumes.some((v) => v.name === tmp.name && v.emptyDir), '/tmp is an emptyDir');
    const resources = obj(container.resources, 'resources');
    assert.equal(obj(resources.limits, 'limits').memory, '512Mi');
    assert.ok(obj(resources.requests, 'requests').memory && obj(resources.requests, 'requests').cpu);
    probeCommand('readinessProbe');
    probeCommand('livenessProbe');
  });
});

describe('deploy/tender.service', () => {
  const unitFile = join(deploy, 'tender.service');
  const unitText = readFileSync(unitFile, 'utf8');
  /** Section -> key -> every value given (repeatable keys keep them all). */
  const unit = new Map<string, Map<string, string[]>>();
  {
    let section: Map<string, string[]> | undefined;
    for (const raw of unitText.split('\n')) {
      const line = raw.trim();
      if (!line || line.startsWith('#') || line.startsWith(';')) continue;
      const head = /^\[(\w+)\]$/.exec(line);
      if (head) {
        section = new Map();
        unit.set(head[1]!, section);
        continue;
      }
      const kv = /^(\w+)=(.*)$/.exec(line);
      assert.ok(kv && section, `a Key=value line inside a section: ${line}`);
      section.set(kv[1]!, [...(section.get(kv[1]!) ?? []), kv[2]!]);
    }
  }
  const get = (section: string, key: string) => unit.get(section)?.get(key)?.at(-1);

  test('runs the CLI as a dedicated user, restarts on failure, stops within SIGTERM + 40 s, hardened', () => {
    assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
    assert.equal(get('Service', 'ExecStart'), '/usr/bin/node /opt/tender/src/cli/main.ts serve --config /etc/tender/tender.yaml');
    assert.equal(get('Service', 'User'), 'tender');
    assert.equal(get('Service', 'Restart'), 'on-failure');
    assert.equal(get('Service', 'KillSignal'), 'SIGTERM');
    assert.equal(get('Service', 'TimeoutStopSec'), '40');
    assert.equal(get('Service', 'StateDirectory'), 'tender');
    assert.equal(get('Service', 'LimitNOFILE'), '65536');
    for (const [key, value] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['ReadWritePaths', '/var/lib/tender'],
    ]) {
      assert.equal(get('Service', key!), value, `${key}=${value}`);
    }
    assert.equal(get('Install', 'WantedBy'), 'multi-user.target');
    // The data root the unit makes writable is the one the config it installs names.
    assert.match(readFileSync(containerConfig, 'utf8'), /root: \/var\/lib\/tender/);
  });

  test('systemd-analyze verify finds no problem', { skip: skipUnlessTools('systemd-analyze') }, async () => {
    // verify checks that ExecStart's binary exists: where Node is not at /usr/bin/node, check a
    // copy whose only change is this node's path.
    let file = unitFile;
    const dir = await tempDir('deploy-unit');
    try {
      if (!existsSync('/usr/bin/node')) {
        file = join(dir, 'tender.service');
        await writeFile(file, unitText.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      }
      const r = await run('systemd-analyze', ['verify', file], { allowFail: true });
      // It exits 0 on unknown keys and bad values too, and only prints them: both must be clean.
      assert.equal(r.code, 0, r.stderr);
      assert.equal(`${r.stdout}${r.stderr}`.trim(), '', 'no warnings');
    } finally {
      await removeDir(dir);
    }
  });
});

describe('the image entrypoint, outside a container', () => {
  const td = teardown();
  after(() => td.run());

  test('serves /v2/ to the HEALTHCHECK and the probes, and exits 0 on SIGTERM within shutdownTimeout', async () => {
    // /app as the Dockerfile lays it out: its COPY sources, and node_modules holding only the
    // packages `npm ci --omit=dev` installs (the lockfile's non-dev entries).
    const app = await tempDir('deploy-app');
    td.add(() => removeDir(app));
    for (const c of inFinal('COPY').filter((i) => !i.flags.from)) {
      const paths = c.args.split(/\s+/);
      const dest = paths.pop()!;
      if (dest.startsWith('/')) continue; // /etc/tender/tender.yaml: replaced by the copy below
      for (const src of paths) {
        const to = dest.endsWith('/') ? join(app, dest, src.split('/').at(-1)!) : resolve(app, dest);
        await cp(join(repo, src), to, { recursive: true });
      }
    }
    const lock = JSON.parse(await readFile(join(repo, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const prod = Object.entries(lock.packages).filter(([path, p]) => path && !p.dev && path.lastIndexOf('node_modules/') === 0);
    assert.ok(prod.length > 20);
    for (const [path] of prod) await cp(join(repo, path), join(app, path), { recursive: true });
    assert.ok(!existsSync(join(app, 'node_modules', 'typescript')), 'no dev dependency in the image layout');

    // The container config with a free port and a temp data root; everything else as shipped.
    const work = await tempDir('deploy-run');
    td.add(() => removeDir(work));
    const port = await freePort();
    const config = obj(parseYaml(await readFile(containerConfig, 'utf8')), 'config');
    obj(config.server, 'server').port = port;
    config.ops = { ...(typeof config.ops === 'object' && config.ops !== null ? config.ops : {}), host: '127.0.0.1', port: 0 };
    obj(obj(config.storage, 'storage').filesystem, 'filesystem').root = join(work, 'data');
    const configFile = join(work, 'tender.yaml');
    await writeFile(configFile, JSON.stringify(config));

    const argv = [...entrypoint(), ...cmd()];
    const at = argv.indexOf('/etc/tender/tender.yaml');
    assert.ok(at > 0);
    argv[at] = configFile;
    assert.equal(argv[0], 'node');
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TENDER_')));
    const child = spawn(process.execPath, argv.slice(1), { cwd: app, env: { ...env, NODE_ENV: 'production' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((res) => child.once('exit', (code) => res({ code, at: Date.now() })));
    td.add(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    await waitFor(`tender to listen (output so far: ${out})`, async () => out.includes('tender listening'), 20_000);
    const listening = out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Obj)
      .find((l) => l.msg === 'tender listening');
    assert.equal(listening?.url, `http://0.0.0.0:${port}`);
    assert.equal(listening?.storage, join(work, 'data'));
    assert.ok((await stat(join(work, 'data'))).isDirectory(), 'the data root is created');

    // The HEALTHCHECK command, told the port the way a container is (TENDER_SERVER__PORT).
    const healthy = await runHealthcheck(healthcheck().command, { TENDER_SERVER__PORT: String(port) });
    assert.equal(healthy.code, 0, `healthy: ${healthy.stderr}`);
    // The Kubernetes probes hard-code the container port 5000: point them at this one.
    const sts = [...parseAllDocuments(await readFile(join(deploy, 'kubernetes', 'statefulset.yaml'), 'utf8'))].map((d) => obj(d.toJS(), 'doc'))[0]!;
    const c = obj(arr(obj(obj(obj(sts.spec, 'spec').template, 'template').spec, 'pod').containers, 'containers')[0], 'container');
    for (const probe of ['readinessProbe', 'livenessProbe']) {
      const exec = obj(obj(c[probe], probe).exec, `${probe}.exec`);
      const command = arr(exec.command, 'command').map((s) => String(s).replace('127.0.0.1:5000', `127.0.0.1:${port}`));
      const r = await runHealthcheck(command);
      assert.equal(r.code, 0, `${probe}: ${r.stderr}`);
    }
    assert.ok(out.includes('"path":"/v2/"'), 'the health checks reached tender');

    // SIGTERM, as `docker stop` sends (STOPSIGNAL), and a clean exit within shutdownTimeout.
    const sent = Date.now();
    child.kill('SIGTERM');
    const { code, at: stoppedAt } = await exited;
    assert.equal(code, 0, out);
    assert.ok(stoppedAt - sent < 30_000, `stopped in ${stoppedAt - sent} ms`);
    assert.match(out, /"msg":"tender stopped"/);

    // Once it is gone the health command reports unhealthy.
    const gone = await runHealthcheck(healthcheck().command, { TENDER_SERVER__PORT: String(port) });
    assert.equal(gone.code, 1);
  });

  test('the HEALTHCHECK counts 200 and 401 as healthy, anything else as unhealthy', async () => {
    let status = 200;
    const srv = createServer((req, res) => {
      res.statusCode = req.url === '/v2/' ? status : 404;
      res.end();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    td.add(() => new Promise<void>((r) => srv.close(() => r())));
    const port = String((srv.address() as AddressInfo).port);
    for (const [s, expected] of [[200, 0], [401, 0], [404, 1], [500, 1], [503, 1]] as const) {
      status = s;
      const r = await runHealthcheck(healthcheck().command, { TENDER_SERVER__PORT: port });
      assert.equal(r.code, expected, `status ${s} -> exit ${expected}`);
    }
  });
});
