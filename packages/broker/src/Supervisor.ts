/**
 * Keeps exactly one actor running for every destination this process holds the lease of:
 * takes and gives back leases with the other broker processes (`Leases`, `LeasePolicy`),
 * starts, restarts (after a crash, with back-off) and stops actors, following the
 * destinations table and the change announcements on `sluice.control.destinations`.
 */
import type { Destination } from "@sluice/protocol"
import { Envelope, Subjects } from "@sluice/protocol"
import { Cause, Chunk, Clock, Context, Duration, Effect, FiberMap, Layer, Option, Queue, Schedule, SubscriptionRef } from "effect"
import * as ConsumerStream from "./ConsumerStream.js"
import * as DestinationActor from "./DestinationActor.js"
import * as Fact from "./Fact.js"
import type { HealthStore } from "./HealthStore.js"
import { HistoryStore } from "./HistoryStore.js"
import * as LeasePolicy from "./LeasePolicy.js"
import * as Leases from "./Leases.js"
import type { IdempotencyStore } from "./IdempotencyStore.js"
import type { KeyVersions } from "./KeyVersions.js"
import type { TransactionIds } from "./TransactionIds.js"
import type { LossLedger } from "./LossLedger.js"
import type { HttpSender } from "./HttpSender.js"
import { Nats } from "./Nats.js"
import type * as RateLimiter from "./RateLimiter.js"
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
  | RateLimiter.RateLimiters

/** Crash back-off: quick first restarts, at most every 30 s, reset after a minute of calm. */
const restartSchedule = Schedule.exponential("500 millis").pipe(
  Schedule.either(Schedule.spaced("30 seconds")),
  Schedule.resetAfter("1 minute")
)

const make = Effect.gen(function* () {
  const store = yield* HistoryStore
  const recorder = yield* Recorder
  const nats = yield* Nats
  const leases = yield* Leases.Leases
  const actorContext = yield* Effect.context<ActorServices>()
  const actors = yield* FiberMap.make<string>()
  /** The settings each running actor follows; changes that need no new consumer are applied in place. */
  const configs = new Map<string, SubscriptionRef.SubscriptionRef<Destination.Destination>>()
  /** Destinations just taken from a process that did not give them back: their first actor waits for its messages. */
  const takenOverFromGone = new Set<string>()
  /** Leases this process holds. */
  const owned = new Map<string, Leases.Held>()
  /** Until when this process's membership, and so every lease it holds, is in force; how many more it asked for. */
  let alive = { until: 0, wants: 0 }
  /** Leases being given back: the actor stops, the rate window passes, then the lease goes. */
  const handing = new Set<string>()
  /** The destinations as last listed, for the lease rounds; kept while the history database is away. */
  let known: ReadonlyArray<Destination.Destination> = []
  const freeSince = new Map<string, number>()
  const renewEveryMs = Math.max(250, Math.floor(leases.ttlMs / 3))

  const audit = (destinationId: string, action: string, details: unknown) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      yield* recorder.record(
        new Fact.OperatorActed({
          id: Envelope.makeEventId(),
          at: new Date(now).toISOString(),
          actor: leases.name,
          action,
          destinationId,
          details
        })
      )
    })

  const supervised = (
    destination: Destination.Destination,
    settings: SubscriptionRef.SubscriptionRef<Destination.Destination>,
    takenOver: boolean
  ) => {
    // A failed actor still gives back what it held, in order, on its way out — unless pulling
    // failed: then the connection or the server went away, and with it what was in transit.
    let unclean = takenOver
    return Effect.suspend(() => DestinationActor.run(settings, { afterUncleanStop: unclean })).pipe(
      Effect.sandbox,
      Effect.tapError((cause) =>
        Effect.logError("destination actor crashed; restarting", cause).pipe(
          Effect.zipLeft(
            Effect.sync(() => (unclean = Cause.failures(cause).pipe(Chunk.some((e) => e instanceof ConsumerStream.ConsumerEnded))))
          ),
          Effect.zipRight(audit(destination.id, "actor.restarted", { cause: Cause.pretty(cause) }))
        )
      ),
      Effect.retry(restartSchedule),
      Effect.provide(actorContext)
    )
  }

  const stop = (destinationId: string) =>
    Effect.suspend(() => {
      configs.delete(destinationId)
      return FiberMap.remove(actors, destinationId)
    })

  /** One reconciliation at a time per destination: two at once could each start an actor. */
  const locks = new Map<string, Effect.Semaphore>()
  const lockOf = (destinationId: string) => {
    const known = locks.get(destinationId)
    if (known !== undefined) return known
    const lock = Effect.unsafeMakeSemaphore(1)
    locks.set(destinationId, lock)
    return lock
  }

  const reconcile = (destinationId: string): Effect.Effect<void> =>
    Effect.gen(function* () {
      if (handing.has(destinationId)) return yield* stop(destinationId)
      if (!owned.has(destinationId)) {
        yield* stop(destinationId)
        // A new destination (or one whose holder is gone) is taken at once by whoever hears of it
        // first, rather than at the next round; a later round rebalances if need be.
        if (!(yield* isFree(destinationId)) || !(yield* takeLease(destinationId))) return
      }
      const stored = yield* store.getDestination(destinationId)
      const settings = configs.get(destinationId)
      if (Option.isNone(stored)) return yield* stop(destinationId)
      const running = yield* FiberMap.has(actors, destinationId)
      if (running && settings !== undefined) {
        const current = yield* SubscriptionRef.get(settings)
        if (sameConfig(current, stored.value)) return
        if (sameConsumer(current, stored.value)) return yield* SubscriptionRef.set(settings, stored.value)
      }
      const fresh = yield* SubscriptionRef.make(stored.value)
      // Stop the old actor completely before the new one pulls, so a key never has two in flight.
      yield* stop(destinationId)
      configs.set(destinationId, fresh)
      const takenOver = takenOverFromGone.delete(destinationId)
      yield* FiberMap.run(actors, destinationId, supervised(stored.value, fresh, takenOver))
    }).pipe(
      lockOf(destinationId).withPermits(1),
      Effect.catchAll((error) => Effect.logWarning(`cannot reconcile destination ${destinationId}`, error)),
      Effect.annotateLogs({ module: "Supervisor" })
    )

  /** Whether nobody holds the destination's lease in force, as far as this process can see. */
  const isFree = (destinationId: string) =>
    Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (alive.until <= now) return false
      const members = new Map(yield* leases.members)
      members.set(leases.self, { name: leases.name, expiresAt: alive.until, wants: alive.wants })
      return !LeasePolicy.inForce((yield* leases.leases).get(destinationId), members, now)
    })

  const reconcileOwned = Effect.suspend(() => Effect.forEach(Array.from(owned.keys()), reconcile, { discard: true }))

  /** Stops the actor and forgets the lease; the caller has learnt it is no longer ours. */
  const lose = (destinationId: string, reason: string) =>
    Effect.gen(function* () {
      owned.delete(destinationId)
      yield* stop(destinationId)
      yield* Effect.logWarning(`destination ${destinationId}: ${reason}; its actor stopped here`)
      // Recorded in the background: without NATS the record waits for it, and the other actors must stop now.
      yield* Effect.forkIn(audit(destinationId, "destination.lease_lost", { process: leases.name, reason }), scope)
    })

  /** How long requests started here may still count in the destination's rate window. */
  const rateWindowMs = (destinationId: string) => {
    const limit = known.find((d) => d.id === destinationId)?.rateLimit
    return limit ? Math.min(Math.ceil((1000 * limit.burst) / limit.perSecond), leases.ttlMs / 2) : 0
  }

  /** Gives a lease back: actor stopped (what it held back in JetStream, in order), the rate window passed, lease deleted. */
  const handOver = (destinationId: string) =>
    Effect.gen(function* () {
      handing.add(destinationId)
      yield* stop(destinationId)
      yield* Effect.sleep(Duration.millis(rateWindowMs(destinationId)))
      const held = owned.get(destinationId)
      owned.delete(destinationId)
      if (held !== undefined) yield* leases.release(destinationId, held)
      yield* Effect.logInfo(`destination ${destinationId} handed over`)
    }).pipe(
      Effect.catchAll((error) => Effect.logWarning(`lease of ${destinationId} not released; it expires instead`, error)),
      Effect.ensuring(Effect.sync(() => handing.delete(destinationId))),
      Effect.annotateLogs({ module: "Supervisor" })
    )

  /**
   * Renews this process's membership, which keeps every lease it holds. When that fails for
   * long enough that the leases may be taken, every actor stops first: NATS being away, they
   * deliver nothing anyway, and no destination ends up with two.
   */
  const renew = (wants: number) =>
    leases.announce(wants).pipe(
      Effect.tap((until) => Effect.sync(() => (alive = { until, wants }))),
      Effect.catchAll((error) =>
        Effect.gen(function* () {
          yield* Effect.logWarning("membership not renewed", error)
          if ((yield* Clock.currentTimeMillis) >= alive.until - renewEveryMs) yield* loseAll("membership could not be renewed")
        })
      ),
      Effect.asVoid
    )

  const loseAll = (reason: string) =>
    Effect.forEach(Array.from(owned.keys()), (id) => lose(id, reason), { discard: true })

  /** Takes the lease if it can; whether it did. */
  const takeLease = (destinationId: string) =>
    leases.acquire(destinationId).pipe(
      Effect.flatMap(
        Option.match({
          onNone: () => Effect.succeed(false),
          onSome: ({ held, takenFrom }) =>
            Effect.gen(function* () {
              owned.set(destinationId, held)
              freeSince.delete(destinationId)
              // What the gone holder held comes back after its ack wait; the actor waits for it (see DestinationActor).
              if (takenFrom !== undefined) takenOverFromGone.add(destinationId)
              // Its own lease taken up again (see `stranded`) is no takeover worth an audit entry.
              if (takenFrom !== undefined && takenFrom.owner !== leases.self) {
                yield* audit(destinationId, "destination.taken_over", { process: leases.name, from: takenFrom.name })
              }
              return true
            })
        })
      )
    )

  const acquire = (destinationId: string) =>
    takeLease(destinationId).pipe(Effect.flatMap((taken) => (taken ? reconcile(destinationId) : Effect.void)))

  /** One lease round: renew the membership, then give back and take leases — see `LeasePolicy`. */
  const round = Effect.gen(function* () {
    yield* renew(alive.wants)
    // A history database that hangs must not hold the round up: the membership is renewed every round.
    const listed = yield* store.listDestinations.pipe(Effect.timeout(Duration.millis(renewEveryMs)), Effect.option)
    if (Option.isSome(listed)) known = listed.value
    const now = yield* Clock.currentTimeMillis
    const members = new Map(yield* leases.members)
    // This process's own entry as it last wrote it: the copy of the bucket may lag behind.
    members.set(leases.self, { name: leases.name, expiresAt: alive.until, wants: alive.wants })
    const current = new Map(yield* leases.leases)
    for (const [id, held] of owned) {
      const seen = current.get(id)
      // Taken by another process: only possible when this one was thought gone.
      if (seen !== undefined && seen.revision > held.revision && seen.owner !== leases.self) {
        yield* lose(id, `lease taken by ${seen.name}`)
      } else current.set(id, held)
    }
    const ids = known.map((d) => d.id)
    for (const id of ids) {
      if (LeasePolicy.inForce(current.get(id), members, now)) freeSince.delete(id)
      else if (!freeSince.has(id)) freeSince.set(id, now)
    }
    const plan = LeasePolicy.plan({
      self: leases.self,
      now,
      members,
      destinations: ids,
      leases: current,
      freeSince,
      graceMs: leases.ttlMs
    })
    alive = { ...alive, wants: plan.wants }
    const listedIds = new Set(ids)
    // Gone from the table: only a listing made this round says so (one kept while the database is
    // away does not), and only if the destination is not there when asked on its own (a listing
    // that began before it was created does not have it either).
    const unlisted = Option.isSome(listed) ? Array.from(owned.keys()).filter((id) => !listedIds.has(id)) : []
    const gone = yield* Effect.filter(unlisted, (id) =>
      store.getDestination(id).pipe(Effect.map(Option.isNone), Effect.orElseSucceed(() => false))
    )
    // Leases stored as this process's that it does not run (its actors were stopped while its
    // membership could not be renewed): taken up again, or nobody would run them.
    const stranded = ids.filter((id) => current.get(id)?.owner === leases.self && !owned.has(id) && !handing.has(id))
    for (const id of [...plan.release, ...gone]) {
      if (!handing.has(id)) yield* Effect.forkIn(handOver(id), scope)
    }
    // Without a membership in force this process takes nothing.
    if (alive.until > now) {
      yield* Effect.forEach([...stranded, ...plan.acquire], acquire, { concurrency: 16, discard: true })
    }
  }).pipe(
    Effect.catchAll((error) => Effect.logWarning("lease round failed", error)),
    Effect.annotateLogs({ module: "Supervisor" })
  )

  const scope = yield* Effect.scope
  // On the way out: actors stop first (what they held goes back in order; the membership is
  // kept renewed meanwhile), then the leases are given back, after the longest rate window,
  // and the membership ends, so the next holders start at once instead of waiting for it to run out.
  yield* Effect.addFinalizer(() =>
    Effect.gen(function* () {
      const keepRenewing = renew(alive.wants).pipe(
        Effect.repeat(Schedule.spaced(Duration.millis(renewEveryMs))),
        Effect.delay(Duration.millis(renewEveryMs))
      )
      const quiet = Math.max(0, ...Array.from(owned.keys(), rateWindowMs))
      yield* Effect.raceFirst(
        FiberMap.clear(actors).pipe(Effect.zipRight(Effect.sleep(Duration.millis(quiet)))),
        // Finalizers run uninterruptibly: the renewals must be stoppable when the actors are down.
        Effect.interruptible(Effect.zipRight(keepRenewing, Effect.never))
      )
      yield* Effect.forEach(owned, ([id, held]) => leases.release(id, held).pipe(Effect.ignore), {
        concurrency: 16,
        discard: true
      })
      owned.clear()
      yield* leases.leave
    })
  )

  yield* round
  yield* round.pipe(
    Effect.repeat(Schedule.spaced(Duration.millis(renewEveryMs))),
    Effect.delay(Duration.millis(renewEveryMs)),
    Effect.forkScoped
  )
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
  yield* reconcileOwned.pipe(Effect.repeat(Schedule.spaced("30 seconds")), Effect.delay("30 seconds"), Effect.forkScoped)

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

export const layer: Layer.Layer<Supervisor, never, HistoryStore | Leases.Leases | ActorServices> = Layer.scoped(
  Supervisor,
  make
)
