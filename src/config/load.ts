import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { applyEnvOverrides } from './env-overrides.ts';
import { configSchema, type Config } from './schema.ts';

/** A config that cannot be used; the message names every bad key, one per line. */
export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/**
 * Reads the YAML file (when given), applies `TENDER_...` overrides from
 * `env` (see env-overrides.ts; none when env is not given) and validates the result against the
 * schema, whose defaults fill everything left out. Relative paths (data root,
 * TLS cert and key, upstream CA files) are resolved against the config
 * file's directory, or the working directory when there is no file.
 * Throws ConfigError listing every problem, each with where it came from.
 */
export function loadConfig(opts: { file?: string; env?: NodeJS.ProcessEnv }): Config {
  const file = opts.file ? readYaml(opts.file) : undefined;
  const tree: Record<string, unknown> = isRecord(file?.value) ? file.value : {};
  if (file && file.value != null && !isRecord(file.value)) {
    throw new ConfigError([`${opts.file}: the top level must be a mapping of settings`]);
  }
  const { sources, problems } = applyEnvOverrides(tree, opts.env ?? {});
  const parsed = configSchema.safeParse(tree);
  const origin = (at: PropertyKey[]): string => {
    for (let n = at.length; n > 0; n--) {
      const prefix = at.slice(0, n);
      const envName = sources.get(prefix.join('.'));
      if (envName) return `env ${envName}`;
      const line = file && lineOf(file, prefix);
      if (line) return `${opts.file}:${line}`;
    }
    return opts.file ?? 'defaults';
  };
  if (!parsed.success) problems.push(...parsed.error.issues.flatMap((issue) => describe(issue, origin)));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return resolvePaths(parsed.data, opts.file ? path.dirname(path.resolve(opts.file)) : process.cwd());
}

interface YamlFile {
  doc: Document;
  lines: LineCounter;
  value: unknown;
}

function readYaml(file: string): YamlFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read: ${err instanceof Error ? err.message : String(err)}`]);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines });
  if (doc.errors.length > 0) {
    throw new ConfigError(doc.errors.map((e) => `${file}: ${e.message.split('\n')[0]!.replace(/:$/, '')}`));
  }
  return { doc, lines, value: doc.toJS() as unknown };
}

/** The line of the node at a path in the file (a key's own line for unknown keys), if it is there. */
function lineOf(file: YamlFile, at: PropertyKey[]): number | undefined {
  const parent = at.length > 1 ? file.doc.getIn(at.slice(0, -1), true) : file.doc.contents;
  if (!isMap(parent)) return undefined;
  const pair = parent.items.find((p) => (isScalar(p.key) ? p.key.value : p.key) === at.at(-1));
  const offset = isScalar(pair?.key) ? pair.key.range?.[0] : undefined;
  return offset === undefined ? undefined : file.lines.linePos(offset).line;
}

/** One `path.to.key: message (from ...)` line per bad key. */
function describe(issue: z.core.$ZodIssue, origin: (at: PropertyKey[]) => string): string[] {
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) => {
      const at = [...issue.path, key];
      return `${at.join('.')}: unknown setting (from ${origin(at)})`;
    });
  }
  const name = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
  // A bad record key (upstream name) carries the key schema's own message.
  const message = issue.code === 'invalid_key' ? issue.issues.map((i) => i.message).join('; ') : issue.message;
  return [`${name}: ${message} (from ${origin(issue.path)})`];
}

function resolvePaths(config: Config, base: string): Config {
  const fs = config.storage.filesystem;
  fs.root = path.resolve(base, fs.root);
  if (config.auth.htpasswd) config.auth.htpasswd = path.resolve(base, config.auth.htpasswd);
  if (config.server.tls) {
    config.server.tls.cert = path.resolve(base, config.server.tls.cert);
    config.server.tls.key = path.resolve(base, config.server.tls.key);
  }
  for (const upstream of Object.values(config.upstreams)) {
    // An inline PEM is left alone; anything else is a file path.
    if (upstream.ca && !upstream.ca.includes('-----BEGIN')) upstream.ca = path.resolve(base, upstream.ca);
  }
  return config;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
