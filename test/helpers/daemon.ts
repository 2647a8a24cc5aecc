/**
 * Long-running child processes (registries, containerd) that tests start and must stop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { onProcessExit } from './tools.ts';

/** A started background process. */
export interface Daemon {
  child: ChildProcess;
  /** The last ~64 KiB of combined stdout and stderr, for error messages. */
  output(): string;
  /** Resolves when the process has exited (immediately if it already has). */
  exited(): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Daemons still running; killed when the test process exits, in case a test forgot to stop one. */
const live = new Set<ChildProcess>();
onProcessExit(() => {
  for (const child of live) child.kill('SIGKILL');
});

/** Spawns `cmd` in the background with its output captured (not inherited). */
export function spawnDaemon(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Daemon {
  const child = spawn(cmd, args, {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const append = (c: Buffer): void => {
    log = (log + c.toString('utf8')).slice(-65536);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  let done = false;
  live.add(child);
  const exit = new Promise<void>((resolve) => {
    const finish = (): void => {
      done = true;
      live.delete(child);
      resolve();
    };
    child.once('exit', finish);
    child.once('error', (e) => {
      append(Buffer.from(`spawn error: ${e.message}\n`));
      finish();
    });
  });
  return {
    child,
    output: () => log,
    exited: () => exit,
    async stop(graceMs = 5000) {
      if (done) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
  };
}
