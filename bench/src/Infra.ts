/**
 * The real parts each benchmark starts for itself and removes afterwards: a nats-server with
 * a throwaway store, Debian's redis-server without persistence, a throwaway Postgres
 * database (or the broker's embedded PGlite), and `sluice start` as its own process.
 */
import type { JetStreamManager } from "@nats-io/jetstream"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import { NatsServer } from "@sluice/broker"
import { Subjects } from "@sluice/protocol"
import { spawn } from "node:child_process"
import { mkdtemp, readdir, rm } from "node:fs/promises"
import { createServer } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { createInterface } from "node:readline"
import { fileURLToPath, pathToFileURL } from "node:url"
import type { Scope } from "effect"
import { Data, Duration, Effect } from "effect"
import type { BrokerProcess } from "../../test/helpers/brokerProcess.js"
import { startBrokerProcess } from "../../test/helpers/brokerProcess.js"
import { createThrowawayDatabase } from "../../test/helpers/postgres.js"
import type { WaitTimedOut } from "../../test/helpers/waitFor.js"
import { waitForEffect } from "../../test/helpers/waitFor.js"
import * as ProcessStats from "./ProcessStats.js"

/** A part of the benchmark's infrastructure did not start. */
export class InfraFailed extends Data.TaggedError("InfraFailed")<{ readonly message: string }> {}

/** A directory under the OS temp directory, deleted when the scope closes. */
export const tempDir = (prefix: string): Effect.Effect<string, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => mkdtemp(join(tmpdir(), prefix))),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )

/**
 * A nats-server with JetStream on a free port and its own temp store. (test/helpers/nats.ts
 * has the same, but it imports vitest, which refuses to load outside a test run.)
 */
export const natsServer: Effect.Effect<NatsServer.NatsServer, NatsServer.NatsServerNotFound | NatsServer.NatsServerFailed, Scope.Scope> =
  Effect.flatMap(tempDir("sluice-bench-nats-"), (storeDir) => NatsServer.start({ storeDir }))

/** A port nobody listens on right now (for servers that cannot pick their own, like redis-server). */
const freePort: Effect.Effect<number> = Effect.async((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

export interface RedisServer {
  readonly host: string
  readonly port: number
  readonly pid: number
}

/** Debian's redis-server on a free port, in memory only (no RDB snapshots, no AOF), stopped with the scope. */
export const redisServer: Effect.Effect<RedisServer, InfraFailed, Scope.Scope> = Effect.gen(function* () {
  const port = yield* freePort
  const child = yield* Effect.acquireRelease(
    Effect.sync(() =>
      spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
        stdio: ["ignore", "pipe", "inherit"]
      })
    ),
    (child) =>
      Effect.async<void>((resume) => {
        if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
        child.once("exit", () => resume(Effect.void))
        child.kill("SIGTERM")
      })
  )
  yield* Effect.async<void, InfraFailed>((resume) => {
    const lines = createInterface({ input: child.stdout! })
    lines.on("line", (line) => {
      if (line.includes("Ready to accept connections")) resume(Effect.void)
    })
    child.once("error", (error) => resume(Effect.fail(new InfraFailed({ message: `redis-server: ${error.message}` }))))
    child.once("exit", (code) => resume(Effect.fail(new InfraFailed({ message: `redis-server exited with code ${code}` }))))
  }).pipe(
    Effect.timeoutFail({
      duration: Duration.seconds(15),
      onTimeout: () => new InfraFailed({ message: "redis-server did not become ready within 15 s" })
    })
  )
  return { host: "127.0.0.1", port, pid: child.pid! }
})

/** Where the broker keeps history: a throwaway Postgres database, or its embedded PGlite. */
export type HistoryBackend = "postgres" | "pglite"

/** A database URL for the broker, dropped when the scope closes; undefined means PGlite. */
export const historyDatabase = (backend: HistoryBackend): Effect.Effect<string | undefined, never, Scope.Scope> =>
  backend === "pglite"
    ? Effect.succeed(undefined)
    : Effect.acquireRelease(Effect.promise(createThrowawayDatabase), (db) => Effect.promise(db.drop)).pipe(
        Effect.map((db) => db.url)
      )

export interface BrokerOptions {
  readonly natsUrl: string
  readonly history: HistoryBackend
  /** Make the broker profileable (see profileHook.mjs); profiles are written into this directory. */
  readonly cpuProfileDir?: string
}

/** Profiles a phase of the broker's life. */
export interface Profiler {
  readonly start: Effect.Effect<void>
  /** Stops profiling; the path of the written .cpuprofile. */
  readonly stop: Effect.Effect<string, WaitTimedOut>
}

export interface Broker {
  readonly process: BrokerProcess
  /** The broker's own process (not its process group), whose CPU and memory are measured. */
  readonly pid: number
  /** The history database; undefined for PGlite, which lives inside the broker process. */
  readonly databaseUrl: string | undefined
  /** Present when the broker was started with `cpuProfileDir`. */
  readonly profiler: Profiler | undefined
}

const profileHook = pathToFileURL(fileURLToPath(new URL("./profileHook.mjs", import.meta.url))).href

const profilesIn = (dir: string) =>
  Effect.promise(async () => (await readdir(dir)).filter((name) => name.endsWith(".cpuprofile")))

const profiler = (pid: number, dir: string): Profiler => ({
  start: Effect.sync(() => process.kill(pid, "SIGUSR2")),
  stop: Effect.gen(function* () {
    const before = new Set(yield* profilesIn(dir))
    process.kill(pid, "SIGUSR2")
    const written = yield* waitForEffect(
      profilesIn(dir).pipe(Effect.map((names) => names.find((name) => !before.has(name)))),
      { timeoutMs: 60_000, description: `the broker's CPU profile in ${dir}` }
    )
    return join(dir, written)
  })
})

/** `sluice start` as users run it, on the given NATS, with a fresh history database. */
export const broker = (options: BrokerOptions): Effect.Effect<Broker, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const databaseUrl = yield* historyDatabase(options.history)
    const started = yield* startBrokerProcess({
      natsUrl: options.natsUrl,
      databaseUrl,
      env: {
        SLUICE_LOG_LEVEL: "Warn",
        ...(options.cpuProfileDir === undefined
          ? {}
          : { NODE_OPTIONS: `--import=${profileHook}`, BENCH_PROFILE_DIR: options.cpuProfileDir })
      }
    })
    const pid = yield* ProcessStats.pidByEnvironment("bin.ts", "SLUICE_DATA_DIR", started.dataDir)
    return {
      process: started,
      pid,
      databaseUrl,
      profiler: options.cpuProfileDir === undefined ? undefined : profiler(pid, options.cpuProfileDir)
    }
  })

/** A JetStream manager on a connection of the benchmark's own, closed with the scope. */
export const jetStreamManager = (natsUrl: string): Effect.Effect<JetStreamManager, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.promise(() => connect({ servers: natsUrl, name: "sluice-bench" })),
    (nc) => Effect.promise(() => nc.close())
  ).pipe(Effect.flatMap((nc) => Effect.promise(() => jetstreamManager(nc))))

/**
 * Waits until every destination has its durable consumer. Actors create them after the
 * admin API answers, and a new consumer only sees events published after it exists.
 */
export const awaitConsumers = (jsm: JetStreamManager, destinationIds: ReadonlyArray<string>, timeoutMs = 120_000) =>
  Effect.suspend(() => {
    const wanted = new Set(destinationIds.map(Subjects.destinationConsumer))
    let found = 0
    return waitForEffect(
      Effect.promise(async () => {
        const names = new Set<string>()
        for await (const info of jsm.consumers.list(Subjects.EVENTS_STREAM)) names.add(info.name)
        found = [...wanted].filter((name) => names.has(name)).length
        return found === wanted.size
      }),
      { timeoutMs, intervalMs: 100, description: () => `${wanted.size} destination consumers (found ${found})` }
    )
  })

/** Waits until the history writer has stored every event and fact: both its consumers are drained. */
export const awaitHistory = (jsm: JetStreamManager, timeoutMs = 300_000) =>
  waitForEffect(
    Effect.promise(async () => {
      const consumers = [
        await jsm.consumers.info(Subjects.EVENTS_STREAM, Subjects.HISTORY_EVENTS_CONSUMER),
        await jsm.consumers.info(Subjects.FACTS_STREAM, Subjects.HISTORY_FACTS_CONSUMER)
      ]
      return consumers.every((info) => info.num_pending === 0 && info.num_ack_pending === 0)
    }),
    { timeoutMs, intervalMs: 100, description: "the history writer to drain its consumers" }
  )
