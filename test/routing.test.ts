import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveRoute, upstreamForNamespace, type Route, type RoutingConfig, type UpstreamRoute } from '../src/routing.ts';
import { RegistryError } from '../src/registry/errors.ts';

const config: RoutingConfig = {
  upstreams: {
    hub: { url: 'https://registry-1.docker.io', aliases: ['docker.io', 'index.docker.io'], dockerHub: true },
    ghcr: { url: 'https://ghcr.io', aliases: [], dockerHub: false },
    quay: { url: 'https://quay.io', aliases: [], dockerHub: false },
  },
  defaultUpstream: 'hub',
  localNamespaces: ['acme/**', 'solo'],
};

function upstreamOf(r: Route): UpstreamRoute {
  assert.equal(r.kind, 'upstream');
  return r as UpstreamRoute;
}

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof RegistryError ? err.code : 'other';
  }
  return undefined;
}

test('a path prefix names the upstream', () => {
  assert.deepEqual(resolveRoute('ghcr/acme/tool', undefined, config), {
    kind: 'upstream',
    upstream: 'ghcr',
    name: 'acme/tool',
    repo: 'cache/ghcr/acme/tool',
    accessName: 'ghcr/acme/tool',
  });
});

test('Docker Hub single names map to library/, through prefix, ns and default alike', () => {
  const viaPrefix = upstreamOf(resolveRoute('hub/nginx', undefined, config));
  const viaNs = upstreamOf(resolveRoute('library/nginx', 'docker.io', config));
  const viaDefault = upstreamOf(resolveRoute('nginx', undefined, config));
  for (const r of [viaPrefix, viaNs, viaDefault]) {
    assert.equal(r.upstream, 'hub');
    assert.equal(r.name, 'library/nginx');
    assert.equal(r.repo, 'cache/hub/library/nginx');
  }
  assert.equal(resolveRoute('ghcr/nginx', undefined, config).name, 'nginx', 'only Docker Hub maps library/');
});

test('containerd ns matches key, alias or URL host, and wins over a prefix', () => {
  assert.equal(upstreamForNamespace('docker.io', config), 'hub');
  assert.equal(upstreamForNamespace('registry-1.docker.io', config), 'hub');
  assert.equal(upstreamForNamespace('ghcr.io', config), 'ghcr');
  assert.equal(upstreamForNamespace('QUAY.IO', config), 'quay');
  const r = upstreamOf(resolveRoute('ghcr/tool', 'docker.io', config));
  assert.equal(r.upstream, 'hub');
  assert.equal(r.name, 'ghcr/tool');
});

test('unconfigured registries are refused, never proxied', () => {
  assert.equal(code(() => resolveRoute('library/nginx', 'evil.example.com', config)), 'NAME_UNKNOWN');
  const noDefault = { ...config, defaultUpstream: '' };
  assert.equal(code(() => resolveRoute('other/tool', undefined, noDefault)), 'NAME_UNKNOWN');
  const missingDefault = { ...config, defaultUpstream: 'gone' };
  assert.equal(code(() => resolveRoute('other/tool', undefined, missingDefault)), 'NAME_UNKNOWN');
});

test('names without a prefix go to the default upstream unchanged', () => {
  const r = upstreamOf(resolveRoute('bitnami/redis', undefined, config));
  assert.equal(r.upstream, 'hub');
  assert.equal(r.name, 'bitnami/redis');
});

test('local namespaces win over prefixes and the default, but not over ns', () => {
  assert.deepEqual(resolveRoute('acme/app', undefined, config), {
    kind: 'local',
    name: 'acme/app',
    repo: 'local/acme/app',
    accessName: 'acme/app',
  });
  assert.equal(resolveRoute('acme/team/app', undefined, config).kind, 'local');
  assert.equal(resolveRoute('solo', undefined, config).kind, 'local');
  assert.equal(resolveRoute('acme', undefined, config).kind, 'upstream', 'acme/** needs a component after acme/');
  assert.equal(resolveRoute('acme/app', 'docker.io', config).kind, 'upstream', 'containerd ns always means an upstream');
  const hub = resolveRoute('hub/library/alpine', undefined, config);
  assert.equal(hub.accessName, 'hub/library/alpine');
  assert.equal(resolveRoute('alpine', undefined, config).accessName, 'hub/library/alpine', 'same access name by every route');
});
