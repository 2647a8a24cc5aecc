import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { configSchema } from './schema.ts';

const prefix = 'TENDER_';
/** TENDER_ variables that are not settings. */
const notSettings = new Set(['TENDER_CONFIG']);

type Tree = Record<string, unknown>;

/**
 * Applies `TENDER_<SEG>__<SEG>...` variables to a raw (pre-validation)
 * config tree, in place. Segments match schema keys case-insensitively, with
 * `_` ignored inside a segment (`SHUTDOWN_TIMEOUT` finds `shutdownTimeout`);
 * record keys such as upstream names are lower-cased with `_` read as `-`.
 * A value is taken verbatim where the schema wants a string, else parsed as
 * YAML (`5001`, `true`, `[docker.io]`). Unknown segments are kept, so
 * validation reports them like unknown keys in the file.
 *
 * Returns where each written path came from (`server.port` →
 * `TENDER_SERVER__PORT`, including containers it created) and any problems.
 */
export function applyEnvOverrides(
  tree: Tree,
  env: NodeJS.ProcessEnv,
): { sources: Map<string, string>; problems: string[] } {
  const sources = new Map<string, string>();
  const problems: string[] = [];
  const names = Object.keys(env).filter((n) => n.startsWith(prefix) && !notSettings.has(n)).sort();
  for (const name of names) {
    const raw = env[name] ?? '';
    const segments = name.slice(prefix.length).split('__');
    if (segments.some((s) => s === '')) {
      problems.push(`${name}: not a setting (segments are separated by a double underscore)`);
      continue;
    }
    let schema: z.ZodType | undefined = configSchema;
    let node = tree;
    const path: string[] = [];
    for (const [i, segment] of segments.entries()) {
      const { key, child } = childOf(schema, segment);
      path.push(key);
      const at = path.join('.');
      if (i === segments.length - 1) {
        const value = parseValue(raw, child);
        if (value.error) problems.push(`${at}: ${value.error} (from env ${name})`);
        else node[key] = value.value;
        sources.set(at, name);
      } else {
        if (!isTree(node[key])) {
          node[key] = initialContainer(child);
          if (!sources.has(at)) sources.set(at, name);
        }
        node = node[key] as Tree;
        schema = child;
      }
    }
  }
  return { sources, problems };
}

/** The key an env segment names under a schema node, and that key's schema (undefined when unknown). */
function childOf(schema: z.ZodType | undefined, segment: string): { key: string; child: z.ZodType | undefined } {
  const base = schema && unwrap(schema);
  if (base instanceof z.ZodObject) {
    const wanted = normalise(segment);
    const key = Object.keys(base.shape).find((k) => normalise(k) === wanted);
    if (key) return { key, child: base.shape[key] as z.ZodType };
  }
  if (base instanceof z.ZodRecord) {
    return { key: segment.toLowerCase().replaceAll('_', '-'), child: base.valueType as z.ZodType };
  }
  return { key: segment.toLowerCase(), child: undefined };
}

function normalise(key: string): string {
  return key.toLowerCase().replaceAll('_', '');
}

/** The schema under optional/default/prefault/nullable wrappers and transform pipes. */
function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    if (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault || s instanceof z.ZodNullable) {
      s = s.unwrap() as z.ZodType;
    } else if (s instanceof z.ZodPipe) {
      s = s.in as z.ZodType;
    } else {
      return s;
    }
  }
}

/**
 * A container the file did not have. Where the schema pre-fills it (the
 * default `hub` upstream), start from that, so `TENDER_UPSTREAMS__HUB__PASSWORD`
 * alone adds a password to the default hub rather than replacing it.
 */
function initialContainer(schema: z.ZodType | undefined): Tree {
  if (schema instanceof z.ZodPrefault) {
    const value: unknown = schema._zod.def.defaultValue;
    if (isTree(value)) return structuredClone(value);
  }
  return {};
}

function parseValue(raw: string, schema: z.ZodType | undefined): { value?: unknown; error?: string } {
  const type = schema && unwrap(schema)._zod.def.type;
  if (type === 'string' || type === 'enum' || type === 'literal') return { value: raw };
  try {
    return { value: parseYaml(raw) as unknown };
  } catch (err) {
    return { error: `not a valid YAML value: ${err instanceof Error ? err.message.split('\n')[0]!.replace(/:$/, '') : String(err)}` };
  }
}

function isTree(value: unknown): value is Tree {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
