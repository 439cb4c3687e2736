/**
 * Where destination health lives: one NATS KV entry per destination in the `sluice_health`
 * bucket, so a paused destination stays paused across restarts and every broker process
 * sees the same state. Every change goes through `apply`, a compare-and-set on the entry,
 * so an operator's pause and an actor's failure count never overwrite each other; each
 * state change is recorded in the history with its reason.
 */
import type { KV } from "@nats-io/kv"
import { KvWatchInclude } from "@nats-io/kv"
import type { Destination } from "@sluice/protocol"
import { Envelope } from "@sluice/protocol"
import type { Scope } from "effect"
import { Clock, Context, Data, Effect, Either, Layer, Queue, Runtime, Schedule } from "effect"
import * as Fact from "./Fact.js"
import * as HealthMachine from "./HealthMachine.js"
import * as KvBucket from "./KvBucket.js"
import { Nats } from "./Nats.js"
import { Recorder } from "./Recorder.js"

/** The KV bucket holding each destination's `HealthMachine.HealthStatus`. */
export const BUCKET = "sluice_health"

export class HealthUnavailable extends Data.TaggedError("HealthUnavailable")<{ readonly message: string }> {}

export class HealthStore extends Context.Tag("@sluice/broker/HealthStore")<
  HealthStore,
  {
    /** The stored status; a destination never written to is `active` since `createdAt`. */
    readonly get: (destination: Destination.Destination) => Effect.Effect<HealthMachine.HealthStatus, HealthUnavailable>
    /** Applies one input atomically; persists and records the result when anything changed. */
    readonly apply: (
      destination: Destination.Destination,
      input: HealthMachine.Input
    ) => Effect.Effect<HealthMachine.Transition, HealthUnavailable>
    /** Calls `onStatus` with every status stored for the destination from now on, until the scope closes. */
    readonly watch: (
      destinationId: string,
      onStatus: (status: HealthMachine.HealthStatus) => Effect.Effect<void>
    ) => Effect.Effect<void, HealthUnavailable, Scope.Scope>
    /** Forgets a removed destination. */
    readonly remove: (destinationId: string) => Effect.Effect<void, HealthUnavailable>
  }
>() {}

const unavailable = (cause: unknown) => new HealthUnavailable({ message: `health store: ${String(cause)}` })

/** Another writer changed the entry between our read and our write: read again and retry. */
class Conflict extends Data.TaggedError("Conflict")<Record<never, never>> {}


const initialFor = (destination: Destination.Destination) => HealthMachine.initial(Date.parse(destination.createdAt))

const read = (kv: KV, destination: Destination.Destination) =>
  Effect.tryPromise({ try: () => kv.get(destination.id), catch: unavailable }).pipe(
    Effect.map((entry) => {
      if (entry === null || entry.operation !== "PUT") return { status: initialFor(destination), revision: null }
      const decoded = HealthMachine.decode(entry.string())
      // An unreadable entry (written by a future version?) is replaced rather than wedging the destination.
      return { status: Either.getOrElse(decoded, () => initialFor(destination)), revision: entry.revision }
    })
  )

export const layer: Layer.Layer<HealthStore, HealthUnavailable, Nats | Recorder> = Layer.scoped(
  HealthStore,
  Effect.gen(function* () {
    const { js, replicas } = yield* Nats
    const recorder = yield* Recorder
    const kv = yield* Effect.tryPromise({
      try: () => KvBucket.open(js, BUCKET, { replicas, description: "Sluice destination health" }),
      catch: unavailable
    })

    const write = (id: string, status: HealthMachine.HealthStatus, revision: number | null) =>
      Effect.tryPromise({
        try: () =>
          revision === null
            ? kv.create(id, HealthMachine.encode(status))
            : kv.update(id, HealthMachine.encode(status), revision),
        catch: (cause) => (KvBucket.isConflict(cause) ? new Conflict() : unavailable(cause))
      })

    const apply = (destination: Destination.Destination, input: HealthMachine.Input) =>
      Effect.gen(function* () {
        const { status, revision } = yield* read(kv, destination)
        const now = yield* Clock.currentTimeMillis
        const result = HealthMachine.transition(status, input, destination.health, now)
        if (result.status === status) return result
        yield* write(destination.id, result.status, revision)
        if (result.change !== null) {
          yield* recorder.record(
            new Fact.HealthChanged({
              id: Envelope.makeEventId(),
              destinationId: destination.id,
              from: result.change.from,
              to: result.change.to,
              reason: result.change.reason,
              at: new Date(now).toISOString()
            })
          )
          yield* Effect.logInfo(`health ${result.change.from} → ${result.change.to}: ${result.change.reason}`).pipe(
            Effect.annotateLogs({ module: "HealthStore", destination: destination.id })
          )
        }
        return result
      }).pipe(
        Effect.retry({ while: (error) => error._tag === "Conflict", schedule: Schedule.recurs(20) }),
        Effect.catchTag("Conflict", () => Effect.fail(unavailable("too many concurrent health updates")))
      )

    // One watcher of the whole bucket serves every actor: a watcher per destination would be
    // a consumer per destination on the server, idle or not.
    const listeners = new Map<string, Set<(status: HealthMachine.HealthStatus, revision: number) => void>>()
    const entries = yield* Effect.acquireRelease(
      Effect.tryPromise({ try: () => kv.watch({ include: KvWatchInclude.UpdatesOnly }), catch: unavailable }),
      (entries) => Effect.sync(() => entries.stop())
    )
    // The loop ends when `stop()` runs at scope close; no Effect waits on the iterator.
    void (async () => {
      for await (const entry of entries) {
        const waiting = listeners.get(entry.key)
        if (waiting === undefined || entry.operation !== "PUT") continue
        const decoded = HealthMachine.decode(entry.string())
        if (Either.isRight(decoded)) for (const listener of waiting) listener(decoded.right, entry.revision)
      }
    })()

    const watch = (destinationId: string, onStatus: (status: HealthMachine.HealthStatus) => Effect.Effect<void>) =>
      Effect.gen(function* () {
        const runFork = Runtime.runFork(yield* Effect.runtime<never>())
        // Statuses are applied one after another, in the order they were stored.
        const queue = yield* Queue.unbounded<HealthMachine.HealthStatus>()
        yield* Queue.take(queue).pipe(Effect.flatMap(onStatus), Effect.forever, Effect.forkScoped)
        // The stored status read below may arrive after a newer one from the watcher: the revision tells.
        let applied = 0
        const listener = (status: HealthMachine.HealthStatus, revision: number) => {
          if (revision <= applied) return
          applied = revision
          void runFork(Queue.offer(queue, status))
        }
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            const set = listeners.get(destinationId) ?? new Set()
            set.add(listener)
            listeners.set(destinationId, set)
          }),
          () =>
            Effect.sync(() => {
              const set = listeners.get(destinationId)
              set?.delete(listener)
              if (set?.size === 0) listeners.delete(destinationId)
            })
        )
        // What was stored before the listener was in place.
        const entry = yield* Effect.tryPromise({ try: () => kv.get(destinationId), catch: unavailable })
        if (entry !== null && entry.operation === "PUT") {
          const decoded = HealthMachine.decode(entry.string())
          if (Either.isRight(decoded)) listener(decoded.right, entry.revision)
        }
      })

    return HealthStore.of({
      get: (destination) => read(kv, destination).pipe(Effect.map(({ status }) => status)),
      apply,
      watch,
      remove: (id) => Effect.tryPromise({ try: () => kv.purge(id), catch: unavailable })
    })
  })
)
