/**
 * Small process and filesystem helpers shared by every test.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** True when an executable called `name` is on PATH. */
export function toolAvailable(name: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/**
 * A `skip` value for node:test: a reason string when a tool is missing, else false.
 * Under CI=true a missing tool throws instead, so CI fails rather than silently skipping.
 */
export function skipUnlessTools(...names: string[]): string | false {
  const missing = names.filter((n) => !toolAvailable(n));
  if (missing.length === 0) return false;
  const reason = `missing tool(s): ${missing.join(', ')}`;
  if (process.env.CI === 'true') throw new Error(`${reason} (CI=true: refusing to skip)`);
  return reason;
}

const exitHooks: Array<() => void> = [];

/**
 * Runs `hook` (synchronously) when the process exits, also on SIGINT/SIGTERM: the safety
 * net for daemons and temp dirs a failed test did not get to clean up. Hooks added later
 * run first.
 */
export function onProcessExit(hook: () => void): void {
  if (exitHooks.length === 0) {
    process.once('exit', () => {
      for (const h of exitHooks.splice(0).reverse()) {
        try {
          h();
        } catch {
          // best effort: keep running the other hooks
        }
      }
    });
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      process.once(signal, () => process.exit(code));
    }
  }
  exitHooks.push(hook);
}

/** Temp dirs not yet removed; swept at exit (set TENDER_KEEP_TMP=1 to keep them). */
const liveDirs = new Set<string>();
onProcessExit(() => {
  if (process.env.TENDER_KEEP_TMP === '1') return;
  for (const dir of liveDirs) rmSync(dir, { recursive: true, force: true });
});

/**
 * A new empty directory under os.tmpdir(), named `tender-<prefix>-XXXXXX`. Remove it with
 * removeDir; anything left is removed when the test process exits.
 */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `tender-${prefix}-`));
  liveDirs.add(dir);
  return dir;
}

/** Removes a directory tree; missing directories are fine. */
export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
  liveDirs.delete(dir);
}

export interface RunOptions {
  /** Extra environment, merged over process.env. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the process (SIGKILL) after this long; default 120 s. */
  timeoutMs?: number;
  /** Resolve even on a non-zero exit code. */
  allowFail?: boolean;
  /** Written to the child's stdin, which is then closed. */
  input?: string | Buffer;
}

export interface RunResult {
  stdout: string;
  /** stdout as raw bytes (for manifests, where re-encoding would change the digest). */
  stdoutBytes: Buffer;
  stderr: string;
  code: number;
}

/**
 * Runs a command to completion and collects its output. Rejects with the command line,
 * exit code and stderr on a non-zero exit (unless `allowFail`) or on timeout.
 */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const line = [cmd, ...args].map((a) => (/[\s"'$]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd: opts.cwd,
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.stdin.on('error', () => {
      // the child may exit before reading its input
    });
    child.stdin.end(opts.input);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${line}: failed to start: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      const result = {
        stdout: stdoutBytes.toString('utf8'),
        stdoutBytes,
        stderr: Buffer.concat(err).toString('utf8'),
        code: code ?? 128,
      };
      if (timedOut) {
        reject(new Error(`${line}: timed out after ${timeoutMs} ms\nstderr: ${result.stderr.trim()}`));
      } else if (result.code !== 0 && !opts.allowFail) {
        const how = signal ? `signal ${signal}` : `exit code ${result.code}`;
        reject(new Error(`${line}: ${how}\nstderr: ${result.stderr.trim()}\nstdout: ${result.stdout.trim().slice(0, 2000)}`));
      } else {
        resolve(result);
      }
    });
  });
}

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). Racy by nature: retry on EADDRINUSE. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Polls `check` until it returns true, failing after `timeoutMs` with `what` in the message. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 15_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      lastError = e;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const detail = lastError instanceof Error ? `: ${lastError.message}` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
}

/** Runs skopeo without consulting the machine's signature policy (/etc/containers/policy.json). */
export function skopeo(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return run('skopeo', ['--insecure-policy', ...args], opts);
}

/** A stack of teardown steps, run in reverse order; every step runs even if one fails. */
export interface Teardown {
  add(step: () => Promise<void> | void): void;
  run(): Promise<void>;
}

/** Collects teardown steps, e.g. `const td = teardown(); after(() => td.run());`. */
export function teardown(): Teardown {
  const steps: Array<() => Promise<void> | void> = [];
  return {
    add: (step) => {
      steps.push(step);
    },
    async run() {
      const errors: unknown[] = [];
      for (const step of steps.splice(0).reverse()) {
        try {
          await step();
        } catch (e) {
          errors.push(e);
        }
      }
      if (errors.length) throw new AggregateError(errors, `${errors.length} teardown step(s) failed`);
    },
  };
}
