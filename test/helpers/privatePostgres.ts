/**
 * A PostgreSQL cluster of the test's own, which it can stop and start for real — unlike the
 * shared server that every other test uses. `initdb` into a temp directory and `pg_ctl` on a
 * free 127.0.0.1 port, run as the `postgres` OS user (Postgres refuses to run as root, which
 * tests are); binaries from /usr/lib/postgresql/<version>/bin, the newest installed, or
 * `SLUICE_PG_BIN`. The cluster and its directory are removed when the scope closes.
 */
import { spawn } from "node:child_process"
import { chown, mkdtemp, readdir, readFile, rm } from "node:fs/promises"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Data, Effect, type Scope } from "effect"

/** A cluster command failed; `output` holds what it printed (and the server log's tail when starting). */
export class PrivatePostgresFailed extends Data.TaggedError("PrivatePostgresFailed")<{
  readonly message: string
  readonly output: string
}> {}

export interface PrivatePostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`, trust auth; the same across restarts. */
  readonly url: string
  readonly port: number
  readonly dataDir: string
  /**
   * Stops the server and waits until it is gone. `fast` (default): clients are disconnected,
   * a clean shutdown; `immediate`: the processes quit at once, as in a crash (recovery on start).
   */
  readonly stop: (mode?: "fast" | "immediate") => Effect.Effect<void, PrivatePostgresFailed>
  /** Starts it again on the same port and data; returns once it accepts connections. */
  readonly start: Effect.Effect<void, PrivatePostgresFailed>
  /** Whether the server runs (`pg_ctl status`), asked without connecting to it. */
  readonly running: Effect.Effect<boolean>
}

const binDir = Effect.promise(async () => {
  const configured = process.env.SLUICE_PG_BIN
  if (configured !== undefined && configured !== "") return configured
  const versions = await readdir("/usr/lib/postgresql").catch(() => [] as Array<string>)
  const newest = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))[0]
  return newest === undefined ? undefined : `/usr/lib/postgresql/${newest}/bin`
})

/** uid and gid of the `postgres` OS user, from /etc/passwd. */
const postgresUser = Effect.promise(async () => {
  const line = (await readFile("/etc/passwd", "utf8")).split("\n").find((l) => l.startsWith("postgres:"))
  const [, , uid, gid] = line?.split(":") ?? []
  return uid === undefined || gid === undefined ? undefined : { uid: Number(uid), gid: Number(gid) }
})

/** A port nothing listens on right now (the cluster binds it a moment later). */
const freePort = Effect.async<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Runs `command` as `user` to its end; answers its exit code. */
const exitCode = (command: string, args: ReadonlyArray<string>, user: { uid: number; gid: number }) =>
  Effect.async<number | null>((resume) => {
    const child = spawn(command, args, { uid: user.uid, gid: user.gid, stdio: "ignore", cwd: tmpdir() })
    child.once("error", () => resume(Effect.succeed(null)))
    child.once("close", (code) => resume(Effect.succeed(code)))
  })

/** Runs `command` as `user` to its end; fails with its output on a non-zero exit. */
const run = (command: string, args: ReadonlyArray<string>, user: { uid: number; gid: number }) =>
  Effect.async<void, PrivatePostgresFailed>((resume) => {
    // stdin ignored, output to a pipe: `pg_ctl start -l` hands the server a log file, so the pipe closes with pg_ctl.
    const child = spawn(command, args, { uid: user.uid, gid: user.gid, stdio: ["ignore", "pipe", "pipe"], cwd: tmpdir() })
    let output = ""
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()))
    child.once("error", (error) => resume(Effect.fail(new PrivatePostgresFailed({ message: `${command}: ${error.message}`, output }))))
    child.once("close", (code) =>
      resume(
        code === 0
          ? Effect.void
          : Effect.fail(new PrivatePostgresFailed({ message: `${command} ${args.join(" ")} exited with ${code}`, output }))
      )
    )
  })

/** A private cluster for the rest of the scope. */
export const privatePostgres: Effect.Effect<PrivatePostgres, PrivatePostgresFailed, Scope.Scope> = Effect.gen(function* () {
  const bin = yield* binDir
  const user = yield* postgresUser
  if (bin === undefined || user === undefined) {
    return yield* new PrivatePostgresFailed({
      message: "needs the PostgreSQL server binaries (/usr/lib/postgresql/<version>/bin) and a `postgres` OS user: apt-get install postgresql",
      output: ""
    })
  }
  const dataDir = yield* Effect.acquireRelease(
    Effect.promise(async () => {
      const dir = await mkdtemp(join(tmpdir(), "sluice-pg-"))
      await chown(dir, user.uid, user.gid)
      return dir
    }),
    (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
  )
  const pgData = join(dataDir, "data")
  const log = join(dataDir, "server.log")
  const port = yield* freePort
  yield* run(join(bin, "initdb"), ["-D", pgData, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"], user)

  const withLog = (error: PrivatePostgresFailed) =>
    Effect.promise(() => readFile(log, "utf8").catch(() => "")).pipe(
      Effect.flatMap((text) => Effect.fail(new PrivatePostgresFailed({ ...error, output: `${error.output}\n${text.split("\n").slice(-20).join("\n")}` })))
    )
  const start = run(
    join(bin, "pg_ctl"),
    [
      "start", "-w", "-t", "60", "-D", pgData, "-l", log,
      // Its socket in its own directory; TCP on 127.0.0.1 only; no fsync: a stopped process, not a lost machine, is what tests do.
      "-o", `-p ${port} -k ${dataDir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50`
    ],
    user
  ).pipe(Effect.catchAll(withLog))
  const stop = (mode: "fast" | "immediate" = "fast") =>
    run(join(bin, "pg_ctl"), ["stop", "-w", "-t", "60", "-D", pgData, "-m", mode], user)

  yield* Effect.acquireRelease(start, () =>
    // Already stopped by the test is fine.
    stop("immediate").pipe(Effect.ignore)
  )
  // pg_ctl status: 0 running, 3 not running.
  const running = Effect.map(exitCode(join(bin, "pg_ctl"), ["status", "-D", pgData], user), (code) => code === 0)
  return { url: `postgres://postgres@127.0.0.1:${port}/postgres`, port, dataDir, stop, start, running }
})
