/**
 * `sluice start` as users run it — its own Node process, with the CLI's config decoding,
 * banner and signal handling — for tests that stop it with SIGTERM/SIGINT or crash it with
 * SIGKILL. The process leads its own process group, so a kill also takes the embedded
 * nats-server it may have spawned, and nothing it started outlives the test's scope. Other
 * commands run the same way: to their end (`destinations pause …`) or until killed (`outbox-relay`).
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { AdminApi } from "@sluice/protocol"
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Scope } from "effect"
import { Data, Duration, Effect } from "effect"
import type { AdminClient } from "./broker.js"

const repoRoot = fileURLToPath(new URL("../..", import.meta.url))
const bin = fileURLToPath(new URL("../../apps/sluice/src/bin.ts", import.meta.url))

/**
 * The key sealing destination secrets in the history (`SLUICE_SECRET_KEY`), the same for every
 * test broker, in-process or not: brokers started one after the other (or side by side) on one
 * database, each with its own data directory, must open each other's secrets, as production
 * brokers sharing a database must. (Here rather than in broker.ts, which the benchmarks cannot
 * import: it depends on vitest.)
 */
export const TEST_SECRET_KEY = "dGVzdC1zZWNyZXQta2V5LW9mLTMyLWJ5dGVzLTAxMjM="

/** How a process ended: an exit code, or the signal that killed it. */
export interface ProcessExit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/** The broker did not become ready, or did not exit when told to; carries what it printed. */
export class BrokerProcessFailed extends Data.TaggedError("BrokerProcessFailed")<{
  readonly message: string
  /** Set when the process had exited. */
  readonly exit: ProcessExit | undefined
  readonly stdout: string
  readonly stderr: string
}> {}

export interface BrokerProcessOptions {
  /** External NATS; absent = the broker launches its embedded nats-server under the data directory. */
  readonly natsUrl?: string
  /** Postgres for history; absent = PGlite under the data directory. */
  readonly databaseUrl?: string
  /** Reuse to keep the embedded stores; absent = a temp directory deleted when the scope closes. */
  readonly dataDir?: string
  /**
   * Further settings, overriding the above and the defaults: SLUICE_ADMIN_PORT=0 (the broker
   * binds a free port and its banner says which), SLUICE_LOG_LEVEL=Info (so a failing test
   * shows what the broker did), a random SLUICE_ADMIN_TOKEN,
   * SLUICE_ALLOW_PRIVATE_DESTINATIONS=true (test receivers listen on 127.0.0.1) and the
   * shared test SLUICE_SECRET_KEY (processes on one database must open each other's
   * destination secrets). E.g. a deliberately bad value.
   */
  readonly env?: Readonly<Record<string, string>>
  /** How long to wait for the banner; default 90 s (tsx and PGlite make a start slow, very slow on a busy machine). */
  readonly readyTimeoutMs?: number
}

/** One running `sluice start`. */
export interface BrokerProcess {
  /** `http://<host>:<port>` as the banner printed it; the API lives under `/api/v1`. */
  readonly adminUrl: string
  /** Sends the admin token (SLUICE_ADMIN_TOKEN) with every request. */
  readonly client: AdminClient
  readonly dataDir: string
  /** What it printed so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  /**
   * Sends `signal` to the broker alone (not to its nats-server: shutting that down is the
   * broker's job) and waits for the exit; fails if it takes longer than `timeoutMs` (default 15 s).
   */
  readonly stop: (signal?: NodeJS.Signals, timeoutMs?: number) => Effect.Effect<ProcessExit, BrokerProcessFailed>
  /** SIGKILL to the whole process group (a crash; the embedded nats-server dies too) and waits for the exit. */
  readonly kill: Effect.Effect<ProcessExit>
  /** Starts another `sluice start` with the same settings and data directory (stop or kill this one first); it has its own admin URL. */
  readonly restart: Effect.Effect<BrokerProcess, BrokerProcessFailed, Scope.Scope>
}

/** Process groups still alive, killed if the test process exits without closing its scopes. */
const liveGroups = new Set<number>()
let exitHookInstalled = false
const killLiveGroupsOnExit = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const pgid of liveGroups) signalGroup(pgid, "SIGKILL")
  })
}

const signalGroup = (pgid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pgid, signal)
  } catch {
    // ESRCH: nothing of the group is left.
  }
}

interface Running {
  readonly child: ChildProcess & { readonly pid: number }
  readonly output: { stdout: string; stderr: string }
  /** Resolves once the process has exited and its output is read to the end. */
  readonly exited: Promise<ProcessExit>
  readonly hasExited: () => boolean
}

const BANNER = /Sluice is running\n[\s\S]*?admin API: (\S+)\/api\/v1\n/

/** The last lines of a stream, for error messages. */
const tail = (text: string): string => text.trimEnd().split("\n").slice(-20).join("\n")

const failure = (running: Running, message: string, exit?: ProcessExit) =>
  new BrokerProcessFailed({
    message: `${message}\n--- stdout (end) ---\n${tail(running.output.stdout)}\n--- stderr (end) ---\n${tail(running.output.stderr)}`,
    exit,
    stdout: running.output.stdout,
    stderr: running.output.stderr
  })

/**
 * Spawns `node --import tsx apps/sluice/src/bin.ts <args>` in a new process group; killed with
 * its group when the scope closes. SLUICE_* variables of the test process are not passed on.
 */
const spawnSluice = (args: ReadonlyArray<string>, env: Readonly<Record<string, string>>): Effect.Effect<Running, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const inherited = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("SLUICE_")))
      const child = spawn(process.execPath, ["--import", "tsx", bin, ...args], {
        cwd: repoRoot,
        env: { ...inherited, ...env },
        detached: true,
        stdio: ["ignore", "pipe", "pipe"]
      })
      if (child.pid === undefined) throw new Error(`cannot spawn ${process.execPath}`)
      const pgid = child.pid
      liveGroups.add(pgid)
      killLiveGroupsOnExit()
      const output = { stdout: "", stderr: "" }
      child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output.stdout += chunk))
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output.stderr += chunk))
      let exit: ProcessExit | undefined
      const exited = new Promise<ProcessExit>((resolve) =>
        child.once("close", (code, signal) => {
          exit = { code, signal }
          resolve(exit)
        })
      )
      return { child: child as Running["child"], output, exited, hasExited: () => exit !== undefined }
    }),
    (running) =>
      Effect.promise(() => {
        // Also reaches a nats-server orphaned by an earlier crash of its broker.
        signalGroup(running.child.pid, "SIGKILL")
        liveGroups.delete(running.child.pid)
        return running.exited
      })
  )

const waitForBanner = (running: Running, timeoutMs: number): Effect.Effect<string, BrokerProcessFailed> =>
  Effect.async<string, BrokerProcessFailed>((resume) => {
    let settled = false
    const settle = (effect: Effect.Effect<string, BrokerProcessFailed>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    const check = () => {
      const match = BANNER.exec(running.output.stdout)
      if (match !== null) settle(Effect.succeed(match[1]!))
    }
    running.child.stdout!.on("data", check)
    check()
    running.exited.then((exit) =>
      settle(Effect.fail(failure(running, `sluice start exited before it was ready (code ${exit.code}, signal ${exit.signal})`, exit)))
    )
    return Effect.sync(() => running.child.stdout!.off("data", check))
  }).pipe(
    Effect.timeoutFail({
      duration: Duration.millis(timeoutMs),
      onTimeout: () => failure(running, `sluice start printed no banner within ${timeoutMs} ms`)
    })
  )

const launch = (
  env: Readonly<Record<string, string>>,
  dataDir: string,
  readyTimeoutMs: number
): Effect.Effect<BrokerProcess, BrokerProcessFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const running = yield* spawnSluice(["start"], env)
    const adminUrl = yield* waitForBanner(running, readyTimeoutMs)
    const client = yield* HttpApiClient.make(AdminApi.AdminApi, {
      baseUrl: adminUrl,
      transformClient: HttpClient.mapRequest(HttpClientRequest.bearerToken(env.SLUICE_ADMIN_TOKEN ?? ""))
    }).pipe(Effect.provide(FetchHttpClient.layer))
    const waitForExit = Effect.promise(() => running.exited)
    return {
      adminUrl,
      client,
      dataDir,
      stdout: () => running.output.stdout,
      stderr: () => running.output.stderr,
      stop: (signal = "SIGTERM", timeoutMs = 15_000) =>
        Effect.suspend(() => {
          if (!running.hasExited()) running.child.kill(signal)
          return waitForExit.pipe(
            Effect.timeoutFail({
              duration: Duration.millis(timeoutMs),
              onTimeout: () => failure(running, `sluice start did not exit within ${timeoutMs} ms of ${signal}`)
            })
          )
        }),
      kill: Effect.suspend(() => {
        signalGroup(running.child.pid, "SIGKILL")
        return waitForExit
      }),
      restart: Effect.suspend(() => launch(env, dataDir, readyTimeoutMs))
    }
  })

/** Starts `sluice start` and waits for its banner; the process (group) is killed when the scope closes. */
export const startBrokerProcess = (
  options: BrokerProcessOptions = {}
): Effect.Effect<BrokerProcess, BrokerProcessFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir =
      options.dataDir ??
      (yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-process-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      ))
    const env: Record<string, string> = {
      SLUICE_DATA_DIR: dataDir,
      SLUICE_ADMIN_PORT: "0",
      SLUICE_LOG_LEVEL: "Info",
      SLUICE_ADMIN_TOKEN: randomBytes(24).toString("hex"),
      SLUICE_ALLOW_PRIVATE_DESTINATIONS: "true",
      SLUICE_SECRET_KEY: TEST_SECRET_KEY,
      ...(options.natsUrl === undefined ? {} : { SLUICE_NATS_URL: options.natsUrl }),
      ...(options.databaseUrl === undefined ? {} : { SLUICE_DATABASE_URL: options.databaseUrl }),
      ...options.env
    }
    return yield* launch(env, dataDir, options.readyTimeoutMs ?? 90_000)
  })

/** A `sluice` command that ran to its end: how it ended and everything it printed. */
export interface SluiceRun extends ProcessExit {
  readonly stdout: string
  readonly stderr: string
}

/** How long a command such as `destinations pause` may take: tsx makes every start take a second or two, more on a busy machine. */
const COMMAND_TIMEOUT_MS = 60_000

/**
 * Runs `sluice <args>` as its own process, as an operator types it (`destinations pause <id>
 * --admin-url …`), and waits for it to end; one still running after a minute is a defect.
 */
export const runSluice = (args: ReadonlyArray<string>): Effect.Effect<SluiceRun> =>
  Effect.scoped(
    Effect.gen(function* () {
      const running = yield* spawnSluice(args, {})
      const exit = yield* Effect.promise(() => running.exited).pipe(
        Effect.timeoutFail({
          duration: Duration.millis(COMMAND_TIMEOUT_MS),
          onTimeout: () => failure(running, `sluice ${args.join(" ")} did not exit within ${COMMAND_TIMEOUT_MS} ms`)
        }),
        Effect.orDie
      )
      return { ...exit, stdout: running.output.stdout, stderr: running.output.stderr }
    })
  )

/** A `sluice` command that runs until it is stopped, such as `outbox-relay`. */
export interface SluiceProcess {
  /** What it printed so far. */
  readonly stdout: () => string
  readonly stderr: () => string
  /** SIGKILL to its process group (a crash) and waits for the exit. */
  readonly kill: Effect.Effect<ProcessExit>
}

/** Starts `sluice <args>` in its own process group without waiting for anything; the group is killed when the scope closes. */
export const startSluiceProcess = (args: ReadonlyArray<string>): Effect.Effect<SluiceProcess, never, Scope.Scope> =>
  Effect.map(spawnSluice(args, {}), (running) => ({
    stdout: () => running.output.stdout,
    stderr: () => running.output.stderr,
    kill: Effect.suspend(() => {
      signalGroup(running.child.pid, "SIGKILL")
      return Effect.promise(() => running.exited)
    })
  }))

/** Pids of the processes whose command line contains `text` (Linux /proc), e.g. a store directory. */
export const processesMentioning = (text: string): Effect.Effect<ReadonlyArray<number>> =>
  Effect.promise(async () => {
    const pids = (await readdir("/proc")).filter((name) => /^\d+$/.test(name)).map(Number)
    const matching = await Promise.all(
      pids.map(async (pid) => {
        // The process may be gone between readdir and readFile.
        const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "")
        return pid !== process.pid && cmdline.split("\0").join(" ").includes(text) ? [pid] : []
      })
    )
    return matching.flat()
  })
