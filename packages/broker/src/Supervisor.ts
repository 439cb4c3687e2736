/**
 * Keeps exactly one actor running for every destination this process owns: starts, restarts
 * (after a crash, with back-off) and stops them, following the destinations table and the
 * change announcements on `sluice.control.destinations`.
 */
import type { Destination } from "@sluice/protocol"
import { Envelope, Subjects } from "@sluice/protocol"
import { Cause, Clock, Context, Effect, FiberMap, Layer, Option, Queue, Schedule, SubscriptionRef } from "effect"
import * as DestinationActor from "./DestinationActor.js"
import * as Fact from "./Fact.js"
import type { HealthStore } from "./HealthStore.js"
import { HistoryStore } from "./HistoryStore.js"
import type { IdempotencyStore } from "./IdempotencyStore.js"
import type { KeyVersions } from "./KeyVersions.js"
import type { TransactionIds } from "./TransactionIds.js"
import type { LossLedger } from "./LossLedger.js"
import type { HttpSender } from "./HttpSender.js"
import { Nats } from "./Nats.js"
import { Recorder } from "./Recorder.js"

export class Supervisor extends Context.Tag("@sluice/broker/Supervisor")<
  Supervisor,
  {
    /** Brings one destination's actor in line with its stored configuration. */
    readonly reconcile: (destinationId: string) => Effect.Effect<void>
    /** Ids of destinations whose actor runs in this process. */
    readonly running: Effect.Effect<ReadonlyArray<string>>
  }
>() {}

/** What every destination actor runs on. */
type ActorServices =
  | Nats
  | Recorder
  | HttpSender
  | HealthStore
  | KeyVersions
  | IdempotencyStore
  | TransactionIds
  | LossLedger
  | HistoryStore

/** Crash back-off: quick first restarts, at most every 30 s, reset after a minute of calm. */
const restartSchedule = Schedule.exponential("500 millis").pipe(
  Schedule.either(Schedule.spaced("30 seconds")),
  Schedule.resetAfter("1 minute")
)

const make = Effect.gen(function* () {
  const store = yield* HistoryStore
  const recorder = yield* Recorder
  const nats = yield* Nats
  const actorContext = yield* Effect.context<ActorServices>()
  const actors = yield* FiberMap.make<string>()
  /** The settings each running actor follows; changes that need no new consumer are applied in place. */
  const configs = new Map<string, SubscriptionRef.SubscriptionRef<Destination.Destination>>()

  const supervised = (destination: Destination.Destination, settings: SubscriptionRef.SubscriptionRef<Destination.Destination>) =>
    DestinationActor.run(settings).pipe(
      Effect.sandbox,
      Effect.tapError((cause) =>
        Effect.gen(function* () {
          yield* Effect.logError("destination actor crashed; restarting", cause)
          const now = yield* Clock.currentTimeMillis
          yield* recorder.record(
            new Fact.OperatorActed({
              id: Envelope.makeEventId(),
              at: new Date(now).toISOString(),
              actor: "supervisor",
              action: "actor.restarted",
              destinationId: destination.id,
              details: { cause: Cause.pretty(cause) }
            })
          )
        })
      ),
      Effect.retry(restartSchedule),
      Effect.provide(actorContext)
    )

  const reconcile = (destinationId: string) =>
    Effect.gen(function* () {
      const stored = yield* store.getDestination(destinationId)
      const settings = configs.get(destinationId)
      if (Option.isNone(stored)) {
        configs.delete(destinationId)
        yield* FiberMap.remove(actors, destinationId)
        return
      }
      const running = yield* FiberMap.has(actors, destinationId)
      if (running && settings !== undefined) {
        const current = yield* SubscriptionRef.get(settings)
        if (sameConfig(current, stored.value)) return
        if (sameConsumer(current, stored.value)) return yield* SubscriptionRef.set(settings, stored.value)
      }
      const fresh = yield* SubscriptionRef.make(stored.value)
      configs.set(destinationId, fresh)
      // Stop the old actor completely before the new one pulls, so a key never has two in flight.
      yield* FiberMap.remove(actors, destinationId)
      yield* FiberMap.run(actors, destinationId, supervised(stored.value, fresh))
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning(`cannot reconcile destination ${destinationId}`, error)),
      Effect.annotateLogs({ module: "Supervisor" })
    )

  const reconcileAll = Effect.gen(function* () {
    const destinations = yield* store.listDestinations
    const wanted = new Set(destinations.map((d) => d.id))
    for (const id of configs.keys()) if (!wanted.has(id)) yield* reconcile(id)
    for (const d of destinations) yield* reconcile(d.id)
  }).pipe(Effect.catchAll((error) => Effect.logWarning("cannot list destinations", error)))

  yield* reconcileAll
  // Announcements from any process (including this one) reconcile at once; the periodic pass
  // catches announcements missed while disconnected.
  const announced = yield* Queue.unbounded<string>()
  yield* Effect.acquireRelease(
    Effect.sync(() =>
      nats.connection.subscribe(Subjects.CONTROL_DESTINATIONS, {
        callback: (error, msg) => {
          if (error === null) Queue.unsafeOffer(announced, msg.string())
        }
      })
    ),
    (sub) => Effect.sync(() => sub.unsubscribe())
  )
  yield* Queue.take(announced).pipe(Effect.flatMap(reconcile), Effect.forever, Effect.forkScoped)
  yield* reconcileAll.pipe(Effect.repeat(Schedule.spaced("30 seconds")), Effect.delay("30 seconds"), Effect.forkScoped)

  return {
    reconcile,
    running: Effect.sync(() => Array.from(configs.keys()))
  }
})

const sameConfig = (a: Destination.Destination, b: Destination.Destination): boolean =>
  JSON.stringify(a) === JSON.stringify(b)

/** Whether `b` keeps the consumer and the lanes of `a`; anything else (URL, limits, policies) applies live. */
const sameConsumer = (a: Destination.Destination, b: Destination.Destination): boolean =>
  JSON.stringify(a.subscriptions) === JSON.stringify(b.subscriptions) &&
  a.ordering === b.ordering &&
  a.maxConcurrency === b.maxConcurrency &&
  a.maxQueued === b.maxQueued &&
  JSON.stringify(a.batch) === JSON.stringify(b.batch)

export const layer: Layer.Layer<Supervisor, never, HistoryStore | ActorServices> = Layer.scoped(
  Supervisor,
  make
)
