import type { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';

/** The config an operator command runs with (--config, else $TENDER_CONFIG); exits 2 naming every bad key. */
export function commandConfig(file: string | undefined, cmd: Command): Config {
  try {
    return loadConfig({ file: file ?? process.env.TENDER_CONFIG, env: process.env });
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return cmd.error(`tender: invalid configuration\n${err.message}`, { exitCode: 2 });
  }
}

/** `1.5 MiB`: a byte count for people. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** `5m ago`: how long before `now` a time was, roughly. */
export function formatAge(at: number, now: number): string {
  const s = Math.max(0, Math.round((now - at) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86_400)}d ago`;
}
