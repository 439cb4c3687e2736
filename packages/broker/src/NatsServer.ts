/**
 * A nats-server child process with JetStream, for `sluice start` without a NATS URL and for
 * every test that needs real NATS. It listens on 127.0.0.1 only, waits until the server
 * says it is ready (no sleeps), and can be killed and restarted on the same port and store
 * so fault tests can take NATS away mid-delivery.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { accessSync, constants } from "node:fs"
import { delimiter, join } from "node:path"
import { createInterface } from "node:readline"
import type { Scope } from "effect"
import { Duration, Effect, Schedule, Schema } from "effect"

/** No nats-server binary was found; the message says where we looked and how to install one. */
export class NatsServerNotFound extends Schema.TaggedError<NatsServerNotFound>()("NatsServerNotFound", {
  searched: Schema.Array(Schema.String),
  message: Schema.String
}) {}

/** nats-server exited or did not become ready in time; `stderr` holds its last log lines. */
export class NatsServerFailed extends Schema.TaggedError<NatsServerFailed>()("NatsServerFailed", {
  message: Schema.String,
  stderr: Schema.Array(Schema.String)
}) {}

/** A running (or deliberately killed) nats-server owned by this process. */
export interface NatsServer {
  /** `nats://127.0.0.1:<port>`; stays the same across `restart`. */
  readonly url: string
  readonly port: number
  readonly storeDir: string
  /** The current process id; undefined once it has exited. */
  readonly pid: () => number | undefined
  /** SIGTERM, then SIGKILL if it has not exited after a few seconds. Idempotent. */
  readonly stop: Effect.Effect<void>
  /** SIGKILL now (a crash, for fault tests) and wait until the process is gone. */
  readonly kill: Effect.Effect<void>
  /** Stops the server if it runs, then starts it again on the same port and store. */
  readonly restart: Effect.Effect<void, NatsServerFailed>
}

export interface StartOptions {
  /** JetStream store directory; reuse it to keep streams across restarts. */
  readonly storeDir: string
  /** Client port; omitted = a free port chosen by the server itself. */
  readonly port?: number
  /** Server name shown in `nats server info`; default "sluice". */
  readonly name?: string
  /** How long to wait for "Server is ready"; default 15 seconds. */
  readonly readyTimeout?: Duration.DurationInput
}

const fallbackPaths = ["/usr/sbin/nats-server", "/usr/local/bin/nats-server"]

const isExecutable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * Where the nats-server binary is: `SLUICE_NATS_SERVER_BIN` if set (and nothing else then,
 * so a wrong setting is reported rather than silently ignored), else PATH, else the usual
 * install locations.
 */
export const findBinary = (env: NodeJS.ProcessEnv = process.env): Effect.Effect<string, NatsServerNotFound> =>
  Effect.suspend(() => {
    const configured = env.SLUICE_NATS_SERVER_BIN
    const candidates =
      configured !== undefined && configured !== ""
        ? [configured]
        : [
            ...(env.PATH ?? "")
              .split(delimiter)
              .filter((dir) => dir !== "")
              .map((dir) => join(dir, "nats-server")),
            ...fallbackPaths
          ]
    const found = candidates.find(isExecutable)
    if (found !== undefined) return Effect.succeed(found)
    const where =
      configured !== undefined && configured !== ""
        ? `SLUICE_NATS_SERVER_BIN=${configured} is not an executable file`
        : "nats-server was not found on PATH, in /usr/sbin or in /usr/local/bin"
    return Effect.fail(
      new NatsServerNotFound({
        searched: candidates,
        message:
          `${where}. Install it with \`apt-get install nats-server\` (Debian/Ubuntu) or download it ` +
          "from https://nats.io/download/, or give an external server with SLUICE_NATS_URL."
      })
    )
  })

const LOG_LINES = 40
const READY = "Server is ready"
const LISTENING = /Listening for client connections on [^\s]*:(\d+)/
const ADDRESS_IN_USE = "address already in use"

/** Children still alive, killed if this Node process exits without running finalizers. */
const live = new Set<ChildProcess>()
let exitHookInstalled = false
const killLiveOnExit = () => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once("exit", () => {
    for (const child of live) child.kill("SIGKILL")
  })
}

interface Running {
  readonly child: ChildProcess
  readonly port: number
  /** Resolves once the process is gone (stderr closed), whatever the reason. */
  readonly exited: Promise<void>
}

const hasExited = (child: ChildProcess): boolean => child.exitCode !== null || child.signalCode !== null

/**
 * Spawns one nats-server and waits for its ready line. The last stderr lines are kept for
 * error messages; stderr is read for the whole life of the process so the pipe never fills
 * up and blocks the server.
 */
const spawnReady = (
  binary: string,
  args: ReadonlyArray<string>,
  timeout: Duration.DurationInput
): Effect.Effect<Running, NatsServerFailed> => {
  const log: Array<string> = []
  return Effect.async<Running, NatsServerFailed>((resume) => {
    const child = spawn(binary, args, { stdio: ["ignore", "ignore", "pipe"] })
    live.add(child)
    killLiveOnExit()
    let port: number | undefined
    let settled = false
    const settle = (effect: Effect.Effect<Running, NatsServerFailed>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    const exited = new Promise<void>((resolve) => {
      const done = () => {
        live.delete(child)
        resolve()
      }
      child.once("close", done)
      // Also emitted when a signal cannot be sent; only a failed spawn means "gone".
      child.on("error", (error) => {
        log.push(String(error))
        if (child.pid === undefined) done()
      })
    })
    exited.then(() =>
      settle(
        Effect.fail(
          new NatsServerFailed({
            message: `nats-server exited before it was ready (code ${child.exitCode}, signal ${child.signalCode})`,
            stderr: [...log]
          })
        )
      )
    )
    createInterface({ input: child.stderr }).on("line", (line) => {
      log.push(line)
      if (log.length > LOG_LINES) log.shift()
      const listening = LISTENING.exec(line)
      if (listening !== null) port = Number(listening[1])
      if (line.includes(READY) && port !== undefined) settle(Effect.succeed({ child, port, exited }))
    })
    // Interrupted (timeout or scope closed) before ready: leave nothing behind.
    return Effect.promise(() => {
      if (!hasExited(child)) child.kill("SIGKILL")
      return exited
    })
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new NatsServerFailed({
          message: `nats-server did not report "${READY}" within ${Duration.format(Duration.decode(timeout))}`,
          stderr: [...log]
        })
    })
  )
}

/** Spawns, retrying briefly when the port is still held (e.g. right after a kill). */
const spawnWithRetry = (
  binary: string,
  args: ReadonlyArray<string>,
  timeout: Duration.DurationInput
): Effect.Effect<Running, NatsServerFailed> =>
  Effect.suspend(() => spawnReady(binary, args, timeout)).pipe(
    Effect.retry({
      schedule: Schedule.spaced(Duration.millis(250)),
      times: 3,
      while: (error) => error.stderr.some((line) => line.includes(ADDRESS_IN_USE))
    })
  )

/** Sends `signal` and waits for the exit; SIGKILL if it does not come within a few seconds. */
const terminate = (running: Running, signal: NodeJS.Signals): Effect.Effect<void> =>
  Effect.gen(function* () {
    if (!hasExited(running.child)) running.child.kill(signal)
    const exitedInTime = yield* Effect.promise(() => running.exited).pipe(
      Effect.timeoutTo({ duration: Duration.seconds(5), onSuccess: () => true, onTimeout: () => false })
    )
    if (!exitedInTime) {
      running.child.kill("SIGKILL")
      yield* Effect.promise(() => running.exited)
    }
  })

/**
 * Starts nats-server with JetStream on 127.0.0.1 and returns once it accepts clients.
 * Closing the scope stops it (and any process `restart` started since).
 */
export const start = (options: StartOptions): Effect.Effect<NatsServer, NatsServerNotFound | NatsServerFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const binary = yield* findBinary()
    const timeout = options.readyTimeout ?? Duration.seconds(15)
    const argsFor = (port: number): ReadonlyArray<string> => [
      "-js",
      "-sd",
      options.storeDir,
      "-a",
      "127.0.0.1",
      "-p",
      String(port),
      "-n",
      options.name ?? "sluice"
    ]
    // Port -1 makes the server bind a free port itself and log it: unlike probing for a
    // free port first, no other process can take it in between.
    const state: { current: Running } = yield* Effect.acquireRelease(
      spawnWithRetry(binary, argsFor(options.port ?? -1), timeout).pipe(Effect.map((current) => ({ current }))),
      (state) => terminate(state.current, "SIGTERM")
    )
    const port = state.current.port
    const stop = Effect.suspend(() => terminate(state.current, "SIGTERM"))
    return {
      url: `nats://127.0.0.1:${port}`,
      port,
      storeDir: options.storeDir,
      pid: () => (hasExited(state.current.child) ? undefined : state.current.child.pid),
      stop,
      kill: Effect.suspend(() => terminate(state.current, "SIGKILL")),
      restart: Effect.zipRight(
        stop,
        Effect.uninterruptibleMask((restore) =>
          restore(spawnWithRetry(binary, argsFor(port), timeout)).pipe(
            Effect.map((current) => {
              state.current = current
            })
          )
        )
      )
    }
  })
