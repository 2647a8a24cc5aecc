/**
 * `tender gc`: deletes blobs no manifest references any more (after deletes
 * of local manifests), keeping cached content and recent uploads.
 */
import { Command, InvalidArgumentError } from 'commander';
import { commandConfig, formatBytes } from './format.ts';
import { parseDuration } from '../config/units.ts';
import { createLogger } from '../log.ts';
import { checkedDriver } from '../storage/checked.ts';
import { FilesystemDriver } from '../storage/filesystem.ts';
import { ContentStore } from '../store/content-store.ts';
import { collectGarbage } from '../store/gc.ts';

interface GcOptions {
  config?: string;
  dryRun?: boolean;
  grace?: number;
}

export function gcCommand(): Command {
  return new Command('gc')
    .description('delete blobs that no manifest references (cached content and recent uploads are kept)')
    .option('-c, --config <file>', 'YAML config file (default: $TENDER_CONFIG, else built-in defaults)')
    .option('--dry-run', 'report what would be deleted, delete nothing')
    .option('--grace <duration>', 'keep blobs younger than this, e.g. 30m (default: gc.grace of the config)', parseGrace)
    .action(async (opts: GcOptions, cmd: Command) => {
      const config = commandConfig(opts.config, cmd);
      const root = config.storage.filesystem.root;
      // Logs go to stderr: stdout carries the report.
      const logger = createLogger({ level: config.log.level, destination: process.stderr });
      const store = new ContentStore(checkedDriver(new FilesystemDriver({ root })));
      const dryRun = opts.dryRun ?? false;
      const graceMs = opts.grace ?? config.gc.grace;
      let result;
      try {
        result = await collectGarbage(store, { graceMs, dryRun, logger });
      } catch (err) {
        cmd.error(`tender: garbage collection failed: ${err instanceof Error ? err.message : String(err)}`, { exitCode: 1 });
      }
      const out: string[] = [];
      for (const blob of result.deleted) out.push(`${dryRun ? 'would delete' : 'deleted'} ${blob.digest} (${blob.size} bytes)`);
      const count = `${result.deleted.length} blob${result.deleted.length === 1 ? '' : 's'}`;
      const bytes = `${result.freedBytes} bytes (${formatBytes(result.freedBytes)})`;
      out.push(
        dryRun
          ? `dry run: would delete ${count}, freeing ${bytes}; ${result.marked} referenced, kept`
          : `deleted ${count}, freed ${bytes}; ${result.marked} referenced, kept`,
      );
      process.stdout.write(`${out.join('\n')}\n`);
    });
}

function parseGrace(value: string): number {
  const ms = parseDuration(value);
  if (ms === undefined) throw new InvalidArgumentError('a duration such as 30s, 10m or 1h');
  return ms;
}

