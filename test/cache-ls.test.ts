/**
 * `tender cache ls`: images pulled through tender are listed by repository
 * with their tags, the bytes of what they refer to, and the last access
 * recorded (else when they were cached); local repositories are not listed.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AccessTimes } from '../src/cache/access-times.ts';
import { checkedDriver } from '../src/storage/checked.ts';
import { FilesystemDriver } from '../src/storage/filesystem.ts';
import { ContentStore } from '../src/store/content-store.ts';
import { cacheRepo } from '../src/store/layout.ts';
import type { CachedRepository } from '../src/cli/cache.ts';
import { skopeoPull } from './helpers/clients.ts';
import { startDistribution, type DistributionUpstream } from './helpers/distribution.ts';
import { buildImage, pushImage, type BuiltImage } from './helpers/images.ts';
import { memoryImage, pushMemoryImage } from './helpers/push.ts';
import { startTender, type TenderHandle } from './helpers/tender.ts';
import { removeDir, run, skipUnlessTools, teardown, tempDir } from './helpers/tools.ts';

const skip = skipUnlessTools('docker-registry', 'skopeo', 'openssl');
const cli = join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

/** Bytes of an image as stored: manifest, config and layers. */
async function imageBytes(image: BuiltImage): Promise<number> {
  const config = await stat(join(image.layoutDir, 'blobs', 'sha256', image.configDigest.slice('sha256:'.length)));
  return image.manifestSize + config.size + image.layers.reduce((n, l) => n + l.size, 0);
}

describe('tender cache ls', { skip }, () => {
  const td = teardown();
  let upstream: DistributionUpstream;
  let tender: TenderHandle;
  let configFile: string;
  let small: BuiltImage;
  let large: BuiltImage;
  const usedAt = Date.parse('2030-01-02T03:04:05.000Z');

  before(async () => {
    upstream = await startDistribution({ auth: 'none' });
    td.add(() => upstream.stop());
    tender = await startTender({
      upstreams: { hub: { url: upstream.url, dockerHub: true } },
      defaultUpstream: 'hub',
      local: ['acme/**'],
      access: [
        { repositories: 'acme/**', pull: ['$all'], push: ['$all'] },
        { repositories: '**', pull: ['$all'] },
      ],
    });
    td.add(() => tender.stop());
    small = await buildImage({ layerSizes: [10 * 1024] });
    large = await buildImage({ layerSizes: [300 * 1024, 50 * 1024] });
    td.add(() => removeDir(small.layoutDir));
    td.add(() => removeDir(large.layoutDir));
    const smallDigest = (await pushImage(small, upstream, 'library/small:1')).manifestDigest;
    await pushImage(large, upstream, 'team/large:2.0');
    for (const ref of ['hub/small:1', 'hub/team/large:2.0']) {
      const r = await skopeoPull(`${tender.host}/${ref}`);
      await removeDir(r.dir);
    }
    await pushMemoryImage({ url: tender.url }, 'acme/local', '1', memoryImage());

    // As the server records (and flushes) a pull of small:1.
    const access = new AccessTimes({ store: new ContentStore(checkedDriver(new FilesystemDriver({ root: tender.root }))) });
    access.touchManifest(cacheRepo('hub', 'library/small'), smallDigest, usedAt);
    await access.close();

    const dir = await tempDir('cache-ls');
    td.add(() => removeDir(dir));
    configFile = join(dir, 'tender.yaml');
    await writeFile(configFile, `storage: { filesystem: { root: ${JSON.stringify(tender.root)} } }\nlog: { level: warn }\n`);
  });
  after(() => td.run());

  test('--json lists cached repositories with tags, sizes and last access', async () => {
    const { stdout } = await run(process.execPath, [cli, 'cache', 'ls', '--config', configFile, '--json']);
    const out = JSON.parse(stdout) as { repositories: CachedRepository[]; totalBytes: number };
    assert.deepEqual(
      out.repositories.map((r) => r.name),
      ['hub/library/small', 'hub/team/large'],
    );
    const [s, l] = out.repositories;
    assert.deepEqual([s?.upstream, s?.repository, s?.tags], ['hub', 'library/small', ['1']]);
    assert.deepEqual(l?.tags, ['2.0']);
    assert.equal(s?.sizeBytes, await imageBytes(small));
    assert.equal(l?.sizeBytes, await imageBytes(large));
    assert.equal(out.totalBytes, (await imageBytes(small)) + (await imageBytes(large)));
    assert.equal(s?.lastAccess, new Date(usedAt).toISOString());
    const cachedAt = Date.parse(l?.lastAccess ?? '');
    assert.ok(Math.abs(Date.now() - cachedAt) < 10 * 60_000, `large never read since caching: ${l?.lastAccess}`);
  });

  test('the table shows the same', async () => {
    const { stdout } = await run(process.execPath, [cli, 'cache', 'ls', '--config', configFile]);
    const lines = stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^REPOSITORY\s+TAGS\s+SIZE\s+LAST USED$/);
    assert.match(lines[1] ?? '', /^hub\/library\/small\s+1\s+\S+ \S+\s+2030-01-02T03:04:05\.000Z/);
    assert.match(lines[2] ?? '', /^hub\/team\/large\s+2\.0\s+3\d\d\.\d KiB\s+/);
    assert.match(lines[3] ?? '', /^2 cached repositories, \d+ bytes/);
    assert.ok(!stdout.includes('acme/local'), 'local repositories are not cache');
  });
});
