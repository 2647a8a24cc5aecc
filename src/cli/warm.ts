/**
 * `tender warm IMAGE...`: pulls images through a running tender so that its
 * cache holds them before anyone asks (a bar per image on a terminal, plain
 * lines otherwise).
 */
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { warm, type WarmEvent } from '../cache/warm.ts';
import { formatBytes } from './format.ts';

interface WarmCliOptions {
  url: string;
  platform: string[];
  creds?: string;
  concurrency: number;
}

export function warmCommand(): Command {
  return new Command('warm')
    .description('fetch images into the cache of a running tender ahead of use')
    .argument('<image...>', 'names as pulled from tender, e.g. hub/library/alpine:3.20, alpine, ghcr/owner/image@sha256:...')
    .option('--url <url>', 'the running tender', process.env.TENDER_URL ?? 'http://127.0.0.1:5000')
    .option('--platform <os/arch[/variant]>', 'platform to warm from multi-platform images (repeatable; default: all)', collect, [])
    .option('--creds <user:password>', "credentials for tender's Basic authentication (default: $TENDER_CREDS)")
    .option('--concurrency <n>', 'blobs fetched at once per image', (v) => Math.max(1, Number.parseInt(v, 10) || 4), 4)
    .action(async (images: string[], opts: WarmCliOptions, cmd: Command) => {
      const creds = opts.creds ?? process.env.TENDER_CREDS;
      const report = process.stdout.isTTY ? barReporter() : lineReporter();
      const results = await warm({
        baseUrl: opts.url,
        images,
        platforms: opts.platform,
        concurrency: opts.concurrency,
        onProgress: report.onProgress,
        ...(creds ? { creds } : {}),
      });
      report.finish();
      const failed = results.filter((r) => r.error);
      const bytes = results.reduce((n, r) => n + r.bytes, 0);
      process.stdout.write(`warmed ${results.length - failed.length} of ${results.length} image(s), ${formatBytes(bytes)}\n`);
      if (failed.length > 0) cmd.error(`tender: ${failed.length} image(s) could not be warmed`, { exitCode: 1 });
    });
}

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

interface Reporter {
  onProgress(event: WarmEvent): void;
  finish(): void;
}

/** One line per manifest read, per blob and per image: for logs and pipes. */
function lineReporter(): Reporter {
  const totals = new Map<string, { blobs: number; bytes: number; blobsDone: number; bytesDone: number; started: number }>();
  const out = (line: string): void => void process.stdout.write(`${line}\n`);
  return {
    onProgress(e) {
      switch (e.kind) {
        case 'image':
          totals.set(e.image, { blobs: e.blobs, bytes: e.bytes, blobsDone: 0, bytesDone: 0, started: Date.now() });
          out(`${e.image}: ${e.digest}, ${e.manifests} manifest(s), ${e.blobs} blob(s), ${formatBytes(e.bytes)}`);
          break;
        case 'blob': {
          const t = totals.get(e.image);
          if (!t) break;
          t.blobsDone++;
          t.bytesDone += e.size;
          out(`${e.image}: ${t.blobsDone}/${t.blobs} blobs, ${formatBytes(t.bytesDone)}/${formatBytes(t.bytes)} (${e.digest})`);
          break;
        }
        case 'done': {
          const t = totals.get(e.image);
          out(`${e.image}: done${t ? ` in ${((Date.now() - t.started) / 1000).toFixed(1)}s` : ''}`);
          break;
        }
        case 'error':
          process.stderr.write(`${e.image}: failed: ${e.message}\n`);
          break;
        case 'bytes':
          break;
      }
    },
    finish() {},
  };
}

/** A progress bar per image (bytes, with blob counts) on a terminal. */
function barReporter(): Reporter {
  const bars = new cliProgress.MultiBar(
    {
      format: '{image} |{bar}| {percentage}% | {done}/{size} | {blobsDone}/{blobs} blobs',
      hideCursor: true,
      stream: process.stdout,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
  const active = new Map<string, { bar: cliProgress.SingleBar; bytes: number; blobsDone: number }>();
  /** Printed once the bars are done, so they do not tear the display. */
  const errors: string[] = [];
  return {
    onProgress(e) {
      switch (e.kind) {
        case 'image': {
          const total = Math.max(e.bytes, 1);
          const bar = bars.create(total, 0, { image: e.image, done: formatBytes(0), size: formatBytes(e.bytes), blobsDone: 0, blobs: e.blobs });
          active.set(e.image, { bar, bytes: 0, blobsDone: 0 });
          break;
        }
        case 'bytes': {
          const a = active.get(e.image);
          if (!a) break;
          a.bytes += e.bytes;
          a.bar.update(a.bytes, { done: formatBytes(a.bytes) });
          break;
        }
        case 'blob': {
          const a = active.get(e.image);
          if (!a) break;
          a.blobsDone++;
          a.bar.update({ blobsDone: a.blobsDone });
          break;
        }
        case 'done': {
          const a = active.get(e.image);
          if (a) a.bar.update(a.bar.getTotal(), { done: formatBytes(a.bytes) });
          break;
        }
        case 'error':
          errors.push(`${e.image}: failed: ${e.message}\n`);
          break;
      }
    },
    finish() {
      bars.stop();
      for (const line of errors) process.stderr.write(line);
    },
  };
}
