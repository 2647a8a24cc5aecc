/**
 * `tender cache ls`: what the cache holds, read from storage: cached
 * repositories with their tags, the bytes of the blobs they refer to, and
 * when they were last used.
 */
import { Command } from 'commander';
import { AccessTimes } from '../cache/access-times.ts';
import { planEviction } from '../cache/eviction-plan.ts';
import { scanCache, type CacheInventory } from '../cache/inventory.ts';
import { createLogger } from '../log.ts';
import { checkedDriver } from '../storage/checked.ts';
import { FilesystemDriver } from '../storage/filesystem.ts';
import { ContentStore } from '../store/content-store.ts';
import { commandConfig, formatAge, formatBytes } from './format.ts';

/** One cached repository as `cache ls` shows it. */
export interface CachedRepository {
  /** As clients name it: `<upstream>/<name>`. */
  name: string;
  upstream: string;
  repository: string;
  tags: string[];
  /** Images (root manifests) and loose blobs held. */
  images: number;
  blobs: number;
  /** Bytes of every stored blob the repository refers to (manifests included); blobs shared with other repositories count in each. */
  sizeBytes: number;
  /** ISO time of the last access (or of caching, when never read since). */
  lastAccess: string | undefined;
}

export function cacheCommand(): Command {
  const cache = new Command('cache').description('inspect the cache of upstream content');
  cache
    .command('ls')
    .description('list cached repositories: tags, size and last use')
    .option('-c, --config <file>', 'YAML config file (default: $TENDER_CONFIG, else built-in defaults)')
    .option('--json', 'print JSON')
    .action(async (opts: { config?: string; json?: boolean }, cmd: Command) => {
      const config = commandConfig(opts.config, cmd);
      const logger = createLogger({ level: config.log.level, destination: process.stderr });
      const store = new ContentStore(checkedDriver(new FilesystemDriver({ root: config.storage.filesystem.root })));
      const accessTimes = new AccessTimes({ store, logger });
      await accessTimes.load();
      const inventory = await scanCache(store, accessTimes, logger);
      const repos = summarize(inventory);
      const totalBytes = planEviction({ units: unitsOf(inventory), sizes: inventory.sizes, local: inventory.local, now: Date.now() }).bytesBefore;
      if (opts.json) {
        process.stdout.write(`${JSON.stringify({ repositories: repos, totalBytes }, null, 2)}\n`);
        return;
      }
      process.stdout.write(table(repos, Date.now()));
      process.stdout.write(`${repos.length} cached repositor${repos.length === 1 ? 'y' : 'ies'}, ${totalBytes} bytes (${formatBytes(totalBytes)}) cached, shared blobs counted once\n`);
    });
  return cache;
}

function unitsOf(inventory: CacheInventory) {
  return inventory.units.map((u) => ({ id: u.id, lastAccess: u.lastAccess, refs: [...u.manifests, ...u.blobs] }));
}

/** Groups an inventory's units by repository. */
export function summarize(inventory: CacheInventory): CachedRepository[] {
  const byRepo = new Map<string, { tags: Set<string>; digests: Set<string>; images: number; blobs: number; last: number }>();
  for (const u of inventory.units) {
    let r = byRepo.get(u.repo);
    if (!r) byRepo.set(u.repo, (r = { tags: new Set(), digests: new Set(), images: 0, blobs: 0, last: -Infinity }));
    for (const t of u.tags) r.tags.add(t);
    for (const d of [...u.manifests, ...u.blobs]) r.digests.add(d);
    if (u.kind === 'image') r.images++;
    else r.blobs++;
    r.last = Math.max(r.last, u.lastAccess);
  }
  return [...byRepo.entries()]
    .map(([repo, r]) => {
      const name = repo.slice('cache/'.length);
      const slash = name.indexOf('/');
      let sizeBytes = 0;
      for (const d of r.digests) sizeBytes += inventory.sizes.get(d) ?? 0;
      return {
        name,
        upstream: name.slice(0, slash),
        repository: name.slice(slash + 1),
        tags: [...r.tags].sort(),
        images: r.images,
        blobs: r.blobs,
        sizeBytes,
        lastAccess: r.last > 0 ? new Date(r.last).toISOString() : undefined,
      };
    })
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function table(repos: CachedRepository[], now: number): string {
  const rows = repos.map((r) => [
    r.name,
    r.tags.length > 0 ? r.tags.join(',') : '-',
    formatBytes(r.sizeBytes),
    r.lastAccess ? `${r.lastAccess} (${formatAge(Date.parse(r.lastAccess), now)})` : '-',
  ]);
  const header = ['REPOSITORY', 'TAGS', 'SIZE', 'LAST USED'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}
