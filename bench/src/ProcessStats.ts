/**
 * Memory and CPU of the processes under test, read from Linux's /proc, so the benchmark
 * measures them from outside without instrumenting them.
 */
import { execFileSync } from "node:child_process"
import { readdir, readFile } from "node:fs/promises"
import { Effect, Schedule } from "effect"

/** Clock ticks per second of /proc/<pid>/stat's CPU times. */
const ticksPerSecond = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

export interface Usage {
  /** Resident set size in bytes. */
  readonly rssBytes: number
  /** User + system CPU time so far, in ms. */
  readonly cpuMs: number
}

const parseStat = (stat: string): number => {
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond
}

const usageOf = async (pid: number): Promise<Usage> => {
  const [status, stat] = await Promise.all([readFile(`/proc/${pid}/status`, "utf8"), readFile(`/proc/${pid}/stat`, "utf8")])
  const rssKb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0)
  return { rssBytes: rssKb * 1024, cpuMs: parseStat(stat) }
}

/** The current usage of one process. */
export const usage = (pid: number): Effect.Effect<Usage> => Effect.promise(() => usageOf(pid))

/**
 * The process whose environment has `name=value`, among those whose command line mentions
 * `command` (e.g. the broker started with a given SLUICE_DATA_DIR); fails if there is none.
 */
export const pidByEnvironment = (command: string, name: string, value: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    const pids = (await readdir("/proc")).filter((pid) => /^\d+$/.test(pid))
    for (const pid of pids) {
      // The process may be gone between readdir and readFile.
      const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
      if (!cmdline.includes(command)) continue
      const environ = await readFile(`/proc/${pid}/environ`, "utf8").catch(() => "")
      if (environ.split("\0").includes(`${name}=${value}`)) return Number(pid)
    }
    throw new Error(`no process running ${command} with ${name}=${value}`)
  })

/** CPU time so far of every process whose command name is `comm` (e.g. all Postgres backends), in ms. */
export const cpuOfCommand = (comm: string): Effect.Effect<number> =>
  Effect.promise(async () => {
    const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name))
    const times = await Promise.all(
      pids.map(async (pid) => {
        // The process may be gone between readdir and readFile.
        const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "")
        return stat.includes(`(${comm})`) ? parseStat(stat) : 0
      })
    )
    return times.reduce((a, b) => a + b, 0)
  })

/**
 * The highest RSS each process reaches from now until the scope closes, sampled twice a
 * second (a burst can swell a process far beyond its size when idle).
 */
export const peakRssMeter = (pids: Readonly<Record<string, number>>) =>
  Effect.gen(function* () {
    const peaks: Record<string, number> = {}
    const sample = Effect.forEach(
      Object.entries(pids),
      ([name, pid]) =>
        usage(pid).pipe(
          Effect.map((u) => {
            peaks[name] = Math.max(peaks[name] ?? 0, u.rssBytes)
          }),
          // A process that exited has no more peaks.
          Effect.catchAllDefect(() => Effect.void)
        ),
      { discard: true }
    )
    yield* sample.pipe(Effect.repeat(Schedule.spaced("500 millis")), Effect.forkScoped)
    return Effect.zipRight(sample, Effect.sync(() => ({ ...peaks })))
  })

/** CPU used by a set of processes over an interval: a start mark, then the ms each used since. */
export const cpuMeter = (pids: Readonly<Record<string, number>>, commands: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const read = Effect.gen(function* () {
      const out: Record<string, number> = {}
      for (const [name, pid] of Object.entries(pids)) out[name] = (yield* usage(pid)).cpuMs
      for (const comm of commands) out[comm] = yield* cpuOfCommand(comm)
      return out
    })
    const start = yield* read
    return Effect.map(read, (end) => Object.fromEntries(Object.entries(end).map(([name, ms]) => [name, ms - start[name]!])))
  })
