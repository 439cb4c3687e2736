/**
 * The destinations every contender delivers to: HTTP servers in a process of their own
 * (receiverProcess.ts), started once per benchmark so that Sluice and its baselines post to
 * the very same servers.
 */
import type { Scope } from "effect"
import { Effect } from "effect"
import { waitForEffect } from "../../test/helpers/waitFor.js"
import * as Ipc from "./Ipc.js"
import type { ReceiverProtocol, ServerMode, Summary } from "./ReceiverProtocol.js"

export interface Receivers {
  readonly pid: number
  /** `http://127.0.0.1:<port>/` of each server, in order; grows with `listen`. */
  readonly urls: () => ReadonlyArray<string>
  /** Makes sure at least `count` servers listen. */
  readonly listen: (count: number) => Effect.Effect<void, Ipc.ChildFailed>
  readonly configure: (mode: ServerMode, servers?: ReadonlyArray<number>) => Effect.Effect<void, Ipc.ChildFailed>
  readonly reset: Effect.Effect<void, Ipc.ChildFailed>
  readonly summary: Effect.Effect<Summary, Ipc.ChildFailed>
  readonly arrivals: (server: number) => Effect.Effect<ReadonlyArray<number>, Ipc.ChildFailed>
  /**
   * Waits until `count` distinct events were answered 2xx, or until `deadlineMs` has passed:
   * a contender that cannot deliver in time is reported with what it delivered, not by a
   * failed run.
   */
  readonly awaitUnique: (count: number, deadlineMs: number) => Effect.Effect<Outcome, Ipc.ChildFailed>
}

/** What arrived by the time everything did, or by the deadline. */
export interface Outcome {
  readonly summary: Summary
  /** False when the deadline passed first. */
  readonly complete: boolean
}

/** Starts the receivers process with `count` servers answering 200 at once. */
export const start = (count: number): Effect.Effect<Receivers, Ipc.ChildFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const child = yield* Ipc.start<ReceiverProtocol>("./receiverProcess.ts")
    let ports: ReadonlyArray<number> = []
    const listen = (n: number) =>
      child.call("listen", { count: n }).pipe(
        Effect.map((all) => {
          ports = all
        })
      )
    yield* listen(count)
    const summary = child.call("summary", {})
    return {
      pid: child.pid,
      urls: () => ports.map((port) => `http://127.0.0.1:${port}/`),
      listen,
      configure: (mode, servers) => child.call("configure", { mode, servers }),
      reset: child.call("reset", {}),
      summary,
      arrivals: (server) => child.call("arrivals", { server }),
      awaitUnique: (target, deadlineMs) =>
        waitForEffect(
          summary.pipe(Effect.map((s) => s.unique >= target && s)),
          { timeoutMs: deadlineMs, intervalMs: 100 }
        ).pipe(
          Effect.map((s): Outcome => ({ summary: s, complete: true })),
          Effect.catchTag("WaitTimedOut", () => Effect.map(summary, (s): Outcome => ({ summary: s, complete: false })))
        )
    }
  })
