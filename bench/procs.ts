/**
 * Process bookkeeping for the benchmark: CPU pinning, memory readings from /proc, and a
 * cleanup registry that stops everything the run started (also on failure and SIGINT).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { run } from '../test/helpers/tools.ts';

/** CPU sets when pinning: servers under test on one core, clients on the other. */
export interface Pinning {
  server: string;
  client: string;
  all: string;
}

/** Pinning on a machine with at least 2 CPUs; undefined (no pinning) otherwise or when disabled. */
export function choosePinning(enabled: boolean): Pinning | undefined {
  const n = availableParallelism();
  if (!enabled || n < 2) return undefined;
  return { server: String(n - 1), client: n === 2 ? '0' : `0-${n - 2}`, all: `0-${n - 1}` };
}

/** Sets the CPU affinity of every thread of a process (`taskset -a -p`). */
export async function setAffinity(pid: number, cpus: string): Promise<void> {
  await run('taskset', ['-a', '-p', '-c', cpus, String(pid)]);
}

/** A command prefixed with `taskset -c CPUS` when cpus is given (taskset execs, so the pid is the command's). */
export function pinnedCommand(cmd: string, args: string[], cpus: string | undefined): [string, string[]] {
  return cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
}

/** A field of /proc/PID/status in MB (kB / 1000), or undefined when the process is gone. */
export function procStatusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m?.[1] ? (Number(m[1]) * 1024) / 1e6 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples VmRSS every `intervalMs`; stop() returns the highest sample in MB. */
export function sampleRss(pid: number, intervalMs = 100): { stop(): number } {
  let peak = procStatusMb(pid, 'VmRSS') ?? 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, procStatusMb(pid, 'VmRSS') ?? 0);
  }, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, procStatusMb(pid, 'VmRSS') ?? 0);
    },
  };
}

/** The pid of a process whose command line contains `needle` as one argument (e.g. a unique config path). */
export function findPidByArg(needle: string): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
      if (args.includes(needle)) return Number(entry);
    } catch {
      // exited meanwhile
    }
  }
  return undefined;
}

/** Direct children of this process (by /proc/PID/stat's ppid field). */
export function ownChildren(): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === process.pid) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

/**
 * Stop steps for everything started, run newest first. `add` returns a function that runs
 * the step now and forgets it, for things stopped during the run.
 */
export class Cleanup {
  readonly #steps = new Map<number, { what: string; step: () => Promise<void> }>();
  #next = 0;

  add(what: string, step: () => Promise<void>): () => Promise<void> {
    const id = this.#next++;
    this.#steps.set(id, { what, step });
    return async () => {
      if (!this.#steps.delete(id)) return;
      await step();
    };
  }

  /** Runs every remaining step (each bounded to 20 s); then kills any child process still alive. */
  async runAll(): Promise<void> {
    const steps = [...this.#steps.entries()].reverse();
    this.#steps.clear();
    for (const [, { what, step }] of steps) {
      try {
        await Promise.race([step(), new Promise((_, reject) => setTimeout(() => reject(new Error('timed out')), 20_000).unref())]);
      } catch (e) {
        process.stderr.write(`cleanup: ${what}: ${e instanceof Error ? e.message : String(e)}\n`);
      }
    }
    killChildren();
  }
}

/** SIGKILLs every direct child of this process, by pid (synchronous: usable in an 'exit' handler). */
export function killChildren(): void {
  for (const pid of ownChildren()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** utime+stime of a process in clock ticks (with `children`: plus those of its waited-for children). */
function processTicks(pid: number | 'self', children = false): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 after the command.
    return f[11]! + f[12]! + (children ? f[13]! + f[14]! : 0);
  } catch {
    return 0;
  }
}

/** Ticks the whole machine spent in processes (user, nice, system; not irq/softirq, which no process is charged for). */
function machineBusyTicks(): number {
  const [user = 0, nice = 0, system = 0] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return user + nice + system;
}

/**
 * Measures how much CPU processes other than ours used during a phase (a shared or noisy
 * machine skews every figure). Ours: this process and its finished children (curl, wrk,
 * skopeo) plus the given long-running pids, which must stay alive for the whole phase.
 */
export function foreignCpuMeter(pids: number[]): { stop(): { foreignPct: number; machineBusyPct: number } } {
  const ours = (): number => processTicks('self', true) + pids.reduce((n, p) => n + processTicks(p), 0);
  const t0 = performance.now();
  const busy0 = machineBusyTicks();
  const ours0 = ours();
  return {
    stop() {
      const capacity = ((performance.now() - t0) / 1000) * 100 * availableParallelism(); // USER_HZ = 100 on Linux
      const busy = machineBusyTicks() - busy0;
      const foreign = Math.max(0, busy - (ours() - ours0));
      return { foreignPct: (100 * foreign) / capacity, machineBusyPct: (100 * busy) / capacity };
    },
  };
}
