/**
 * The benchmark's own helper processes (receivers, the ceiling consumer, the BullMQ worker)
 * run in separate Node processes so that they compete for the CPU the way separate services
 * would, and so that the process measured is only the one under test. The parent talks to
 * each over Node's IPC channel: a typed request, a typed reply.
 */
import type { ChildProcess } from "node:child_process"
import { fork } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { Scope } from "effect"
import { Data, Deferred, Duration, Effect } from "effect"

/** Command name → its payload and its answer. */
export type Protocol = Record<string, { readonly request: unknown; readonly reply: unknown }>

/** A helper process failed to start, answered with an error, or died. */
export class ChildFailed extends Data.TaggedError("ChildFailed")<{ readonly message: string }> {}

/** A running helper process. */
export interface Child<P extends Protocol> {
  readonly pid: number
  readonly call: <K extends keyof P & string>(command: K, request: P[K]["request"]) => Effect.Effect<P[K]["reply"], ChildFailed>
}

type Message =
  | { readonly kind: "ready" }
  | { readonly kind: "reply"; readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly kind: "reply"; readonly id: number; readonly ok: false; readonly error: string }

interface Call {
  readonly id: number
  readonly command: string
  readonly request: unknown
}

/**
 * Forks `module` (a file next to this one, run through tsx) and waits until it serves
 * requests. The process is stopped (SIGTERM, then SIGKILL) when the scope closes.
 */
export const start = <P extends Protocol>(
  module: string,
  options: { readonly execArgv?: ReadonlyArray<string> } = {}
): Effect.Effect<Child<P>, ChildFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const path = fileURLToPath(new URL(module, import.meta.url))
    const pending = new Map<number, (message: Message & { kind: "reply" }) => void>()
    const ready = yield* Deferred.make<void, ChildFailed>()
    const child: ChildProcess = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const child = fork(path, [], {
          execArgv: ["--import", "tsx", ...(options.execArgv ?? [])],
          stdio: ["ignore", "inherit", "inherit", "ipc"],
          serialization: "advanced"
        })
        child.on("message", (message: Message) => {
          if (message.kind === "ready") Deferred.unsafeDone(ready, Effect.void)
          else pending.get(message.id)?.(message)
        })
        child.once("exit", (code, signal) => {
          const failed = new ChildFailed({ message: `${module} exited (code ${code}, signal ${signal})` })
          Deferred.unsafeDone(ready, Effect.fail(failed))
          for (const answer of pending.values()) answer({ kind: "reply", id: -1, ok: false, error: failed.message })
          pending.clear()
        })
        return child
      }),
      (child) => stop(child)
    )
    yield* Deferred.await(ready).pipe(
      Effect.timeoutFail({
        duration: Duration.seconds(30),
        onTimeout: () => new ChildFailed({ message: `${module} did not start within 30 s` })
      })
    )
    let nextId = 0
    const call = <K extends keyof P & string>(command: K, request: P[K]["request"]) =>
      Effect.async<P[K]["reply"], ChildFailed>((resume) => {
        const id = nextId++
        pending.set(id, (message) => {
          pending.delete(id)
          resume(
            message.ok
              ? Effect.succeed(message.value as P[K]["reply"])
              : Effect.fail(new ChildFailed({ message: `${module} ${command}: ${message.error}` }))
          )
        })
        child.send({ id, command, request } satisfies Call)
        return Effect.sync(() => pending.delete(id))
      })
    return { pid: child.pid!, call }
  })

const stop = (child: ChildProcess): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000)
    child.once("exit", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    child.kill("SIGTERM")
  })

/** Handlers of a helper process, one per command. */
export type Handlers<P extends Protocol> = {
  readonly [K in keyof P]: (request: P[K]["request"]) => P[K]["reply"] | Promise<P[K]["reply"]>
}

/** Inside a helper process: answers the parent's requests, then tells it it is ready. */
export const serve = <P extends Protocol>(handlers: Handlers<P>): void => {
  const send = process.send?.bind(process)
  if (send === undefined) throw new Error("this module runs as a benchmark helper process (forked with IPC)")
  process.on("message", (call: Call) => {
    const handler = handlers[call.command] as ((request: unknown) => unknown) | undefined
    Promise.resolve()
      .then(() => {
        if (handler === undefined) throw new Error(`unknown command ${call.command}`)
        return handler(call.request)
      })
      .then(
        (value) => send({ kind: "reply", id: call.id, ok: true, value } satisfies Message),
        (error: unknown) =>
          send({ kind: "reply", id: call.id, ok: false, error: error instanceof Error ? error.stack ?? error.message : String(error) } satisfies Message)
      )
  })
  // The parent ends the process with SIGTERM; nothing here needs a graceful shutdown.
  process.once("SIGTERM", () => process.exit(0))
  process.once("disconnect", () => process.exit(0))
  send({ kind: "ready" } satisfies Message)
}
