/**
 * One actor per destination: pulls the destination's durable consumer, keeps events of one
 * key in order, delivers them over HTTP within the destination's concurrency and rate limit,
 * and settles each JetStream message only after the outcome is recorded. Its health decides
 * what it does: deliver (`active`, `recovering`), probe the oldest pending event (`down`),
 * nothing (`paused`), or record arrivals as `disabled`.
 */
import type { Consumer, ConsumerConfig, JsMsg } from "@nats-io/jetstream"
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/transport-node"
import type { States } from "@sluice/protocol"
import { Destination, Envelope, Subjects } from "@sluice/protocol"
import { Clock, Effect, Either, Fiber, FiberSet, identity, Option, Queue, Random, Schedule, Schema, Stream, SubscriptionRef } from "effect"
import * as Admission from "./Admission.js"
import * as ConsumerStream from "./ConsumerStream.js"
import * as Fact from "./Fact.js"
import * as HealthMachine from "./HealthMachine.js"
import * as Poison from "./Poison.js"
import { HealthStore } from "./HealthStore.js"
import type { SendRequest, SendResult } from "./HttpSender.js"
import { HttpSender } from "./HttpSender.js"
import { IdempotencyStore } from "./IdempotencyStore.js"
import { KeyVersions } from "./KeyVersions.js"
import { TransactionIds } from "./TransactionIds.js"
import { HistoryStore } from "./HistoryStore.js"
import type { LossKind } from "./LossLedger.js"
import { LossLedger, lost as lostEvents } from "./LossLedger.js"
import { Nats } from "./Nats.js"
import * as RateLimiter from "./RateLimiter.js"
import { Recorder } from "./Recorder.js"
import * as ResponseClass from "./ResponseClass.js"
import * as RetryPolicy from "./RetryPolicy.js"
import * as Signer from "./Signer.js"

/** How long JetStream waits for an ack before redelivering; held messages are kept alive by heartbeats. */
export const ACK_WAIT_MS = 30_000

/** A message and the envelope it carries. */
interface Item {
  readonly msg: JsMsg
  readonly envelope: Envelope.Envelope
  readonly body: string
  /** Attempts made so far, earlier deliveries of the message included. */
  attempts: number
  /** Attempts that count against the retry policy (not 429s). */
  counted: number
  /** A request for it is on the wire: too late to cancel. */
  inFlight: boolean
  /** Acknowledged or terminated (completed, dead, canceled…): nothing more to do. */
  settled: boolean
  /** A newer version that supersedes it arrived while it was in flight: canceled unless that attempt succeeds. */
  supersededBy: string | undefined
}

/** What to do with an event after an attempt. */
type Decision =
  | { readonly _tag: "Complete" }
  | { readonly _tag: "Retry"; readonly delayMs: number; readonly counted: boolean }
  | { readonly _tag: "Dead"; readonly reason: string }
  | { readonly _tag: "Disabled"; readonly reason: string }

/** The event was settled by someone else (canceled by a newer version) before its attempt began. */
type Superseded = { readonly _tag: "Superseded" }
const superseded: Superseded = { _tag: "Superseded" }

const stateAfter = (decision: Decision): States.DeliveryState => {
  switch (decision._tag) {
    case "Complete":
      return "completed"
    case "Retry":
      return "errored"
    case "Dead":
      return "dead"
    case "Disabled":
      return "disabled"
  }
}

const consumerConfig = (destination: Destination.Destination): Partial<ConsumerConfig> => ({
  durable_name: Subjects.destinationConsumer(destination.id),
  description: `Sluice destination ${destination.id} (${destination.url})`,
  ack_policy: AckPolicy.Explicit,
  ack_wait: nanos(ACK_WAIT_MS),
  max_ack_pending: destination.maxQueued,
  max_deliver: -1,
  filter_subject: Subjects.consumerFilter(destination.subscriptions)
})

/**
 * Creates the destination's durable consumer, or brings an existing one in line with the
 * destination. A new destination gets the events published since it was created, so an
 * event published right after `create` returned is never missed.
 */
export const ensureConsumer = (destination: Destination.Destination) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    const name = Subjects.destinationConsumer(destination.id)
    const desired = consumerConfig(destination)
    const existing = yield* Effect.tryPromise(() => jsm.consumers.info(Subjects.EVENTS_STREAM, name)).pipe(
      Effect.map(Option.some),
      Effect.catchIf(
        (error) => error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
        () => Effect.succeed(Option.none())
      )
    )
    if (Option.isNone(existing)) {
      yield* Effect.tryPromise(() =>
        jsm.consumers.add(Subjects.EVENTS_STREAM, {
          ...desired,
          deliver_policy: DeliverPolicy.StartTime,
          opt_start_time: destination.createdAt
        })
      )
    } else {
      const current = existing.value.config
      if (current.filter_subject !== desired.filter_subject) {
        // A consumer's filter cannot change in place on nats-server 2.9: recreate it where the old one stood.
        yield* Effect.tryPromise(() => jsm.consumers.delete(Subjects.EVENTS_STREAM, name))
        yield* Effect.tryPromise(() =>
          jsm.consumers.add(Subjects.EVENTS_STREAM, {
            ...desired,
            deliver_policy: DeliverPolicy.StartSequence,
            opt_start_seq: existing.value.ack_floor.stream_seq + 1
          })
        )
      } else if (current.max_ack_pending !== desired.max_ack_pending || current.ack_wait !== desired.ack_wait) {
        yield* Effect.tryPromise(() =>
          jsm.consumers.update(Subjects.EVENTS_STREAM, name, {
            max_ack_pending: desired.max_ack_pending,
            ack_wait: desired.ack_wait
          })
        )
      }
    }
    return yield* Effect.tryPromise(() => js.consumers.get(Subjects.EVENTS_STREAM, name))
  })

/** The destination's consumer of operator replays, created when missing. */
export const ensureReplayConsumer = (destination: Destination.Destination) =>
  Effect.gen(function* () {
    const { js, jsm } = yield* Nats
    const name = Subjects.replayConsumer(destination.id)
    yield* Effect.tryPromise(() => jsm.consumers.info(Subjects.REPLAYS_STREAM, name)).pipe(
      Effect.catchIf(
        (error) => error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
        () =>
          Effect.tryPromise(() =>
            jsm.consumers.add(Subjects.REPLAYS_STREAM, {
              durable_name: name,
              description: `Sluice replays for destination ${destination.id}`,
              ack_policy: AckPolicy.Explicit,
              ack_wait: nanos(ACK_WAIT_MS),
              max_ack_pending: 1_000,
              max_deliver: -1,
              deliver_policy: DeliverPolicy.All,
              filter_subject: Subjects.replaySubject(destination.id)
            })
          )
      )
    )
    return yield* Effect.tryPromise(() => js.consumers.get(Subjects.REPLAYS_STREAM, name))
  })

/** Removes the destination's consumers (the destination was deleted). */
export const removeConsumer = (destinationId: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    const remove = (stream: string, name: string) =>
      Effect.tryPromise(() => jsm.consumers.delete(stream, name)).pipe(
        Effect.catchIf(
          (error) =>
            error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
          () => Effect.void
        )
      )
    yield* remove(Subjects.EVENTS_STREAM, Subjects.destinationConsumer(destinationId))
    yield* remove(Subjects.REPLAYS_STREAM, Subjects.replayConsumer(destinationId))
  })

/** Events before replays, each in stream order: the order held messages are handled and released in. */
const streamOrder = (a: JsMsg, b: JsMsg): number =>
  a.info.stream === b.info.stream ? a.seq - b.seq : a.info.stream < b.info.stream ? -1 : 1

/**
 * Runs `a` and `b` until either ends, then interrupts the other and waits for its finalizers,
 * also when the caller itself is interrupted. The actor relies on that order: a mode's
 * consumption must be closed before anything held is released.
 */
const firstOf = <A, E, R, B, E2, R2>(a: Effect.Effect<A, E, R>, b: Effect.Effect<B, E2, R2>) =>
  Effect.uninterruptibleMask((restore) =>
    Effect.gen(function* () {
      const fa = yield* Effect.fork(restore(a))
      const fb = yield* Effect.fork(restore(b))
      return yield* restore(Effect.raceFirst(Fiber.join(fa), Fiber.join(fb))).pipe(
        Effect.ensuring(Effect.zipRight(Fiber.interrupt(fa), Fiber.interrupt(fb)))
      )
    })
  )

/** Where a batched destination's transaction is PUT: `<url>/transactions/<txnId>`, query kept. */
export const transactionUrl = (url: string, txnId: number): string => {
  const u = new URL(url)
  u.pathname = `${u.pathname.replace(/\/+$/, "")}/transactions/${txnId}`
  return u.toString()
}

/** What the actor does in a health state: `active` and `recovering` both deliver (recovering at a ramped rate). */
type Mode = "deliver" | "probe" | "wait" | "disabled"

const modeOf = (state: States.HealthState): Mode =>
  HealthMachine.deliversEvents(state)
    ? "deliver"
    : HealthMachine.probes(state)
      ? "probe"
      : state === "paused"
        ? "wait"
        : "disabled"

/** How often a pulling actor looks for events that expired from the stream (and when it starts pulling). */
const EXPIRY_CHECK_EVERY = "1 minute"
/** How long a delivering actor gathers losses before it reports them in one `sluice.sync_error`. */
const REPORT_AFTER = "1 second"

const decodeLostEvents = Schema.decodeUnknownEither(Destination.LostEvents)

/**
 * Elapsed time for waits measured in place (a batch's gathering window): the monotonic clock,
 * so a wall clock set back an hour does not hold a batch open for an hour.
 */
const monotonicMillis = Effect.map(Clock.currentTimeNanos, (nanos) => Number(nanos / 1_000_000n))

/** How often a `down` destination checks whether it has been down for too long. */
const tickEvery = (policy: Destination.HealthPolicy) => Math.max(100, Math.min(60_000, policy.disableAfterMs / 10))

/**
 * Messages still out from an earlier holder of an ordered destination's consumer that may not
 * have given them back — an actor whose pulling failed (the connection or the server went
 * away, with what was in transit), a process killed or cut off — come back only after their
 * ack wait.
 * Pulling before then would deliver newer events of their keys first; pulling after it gets
 * them first, since JetStream serves redeliveries before new messages. So such an actor waits
 * one ack wait before it starts. (Given-back messages count as outstanding too until they are
 * acknowledged, so an actor whose predecessor stopped cleanly does not look.)
 */
const awaitOutstanding = (destination: Destination.Destination) =>
  Effect.gen(function* () {
    if (destination.ordering !== "key") return
    const { jsm } = yield* Nats
    const outstanding = yield* Effect.tryPromise(() =>
      jsm.consumers.info(Subjects.EVENTS_STREAM, Subjects.destinationConsumer(destination.id))
    ).pipe(
      Effect.map((info) => info.num_ack_pending),
      // Not knowing is treated as having some out.
      Effect.orElseSucceed(() => 1)
    )
    if (outstanding === 0) return
    yield* Effect.logInfo(`${outstanding} messages still out from an earlier actor: starting after their ack wait`)
    yield* Effect.sleep(ACK_WAIT_MS)
  })

/**
 * Runs the actor until interrupted; fails if its consumer goes away (the supervisor restarts
 * it). `settings` brings the changes that apply without a restart: URL, secret, headers,
 * timeout, rate limit, retry and health policies.
 */
export const run = (
  settings: SubscriptionRef.SubscriptionRef<Destination.Destination>,
  options: {
    /** The previous holder may not have given back what it held: a takeover, a restart after pulling failed. */
    readonly afterUncleanStop: boolean
  }
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const initial = yield* SubscriptionRef.get(settings)
      const consumer: Consumer = yield* ensureConsumer(initial)
      const replays: Consumer = yield* ensureReplayConsumer(initial)
      if (options.afterUncleanStop) yield* awaitOutstanding(initial)
      const sender = yield* HttpSender
      const recorder = yield* Recorder
      const healthStore = yield* HealthStore
      const keyVersions = yield* KeyVersions
      const idempotency = yield* IdempotencyStore
      const transactionIds = yield* TransactionIds
      const ledger = yield* LossLedger
      const store = yield* HistoryStore
      const { js, jsm } = yield* Nats
      const health = yield* SubscriptionRef.make(yield* healthStore.get(initial))
      yield* healthStore.watch(initial.id, (status) => SubscriptionRef.set(health, status))
      const limiter = yield* (yield* RateLimiter.RateLimiters).forDestination(initial.id, initial.rateLimit)
      yield* settings.changes.pipe(
        Stream.runForEach((d) => limiter.setLimit(d.rateLimit)),
        Effect.forkScoped
      )
      yield* health.changes.pipe(
        Stream.runForEach((status) =>
          Effect.flatMap(SubscriptionRef.get(settings), (d) => limiter.setFactor(HealthMachine.rampFactor(status, d.health)))
        ),
        Effect.forkScoped
      )
      const semaphore = yield* Effect.makeSemaphore(initial.maxConcurrency)

      /** Permits per request: while recovering concurrency ramps up with the rate, so even an unlimited destination is eased back in. */
      const permits = Effect.gen(function* () {
        const status = yield* SubscriptionRef.get(health)
        const ramp = HealthMachine.rampFactor(status, (yield* SubscriptionRef.get(settings)).health)
        return Math.max(1, Math.min(initial.maxConcurrency, Math.round(1 / ramp)))
      })

      // Messages this actor holds unacknowledged — every one from the moment it arrives — with
      // their event once admitted. They are kept alive with heartbeats (long retries, slow
      // destinations) and carried from one mode to the next (a pause, an outage), so the
      // oldest stays first: JetStream redelivers released messages in the order they were
      // released, not in stream order. Only when the actor stops are they released, oldest first.
      const held = new Map<JsMsg, Item | null>()
      yield* Effect.sync(() => {
        for (const msg of held.keys()) msg.working()
      }).pipe(Effect.repeat(Schedule.spaced(ACK_WAIT_MS / 3)), Effect.forkScoped)
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          const all = Array.from(held.keys()).sort(streamOrder)
          held.clear()
          for (const msg of all) msg.nak()
        })
      )
      const arrive = (msg: JsMsg) => {
        if (!held.has(msg)) held.set(msg, null)
      }
      /**
       * Pulls events and operator replays until the actor stops; every message received is
       * held at once. Fails when either consumer goes away. One pulling serves every mode, so
       * a mode change drops nothing on its way; a pause only stops asking for more, and
       * closing waits for the open pull requests to end, both at once.
       */
      const pulling = Effect.gen(function* () {
        const paused = (yield* currentMode) === "wait"
        // Events and replays arrive on one queue: the modes take from it in chunks.
        const into = yield* Queue.unbounded<JsMsg>()
        const opened = yield* Effect.parallelFinalizers(
          Effect.all([
            ConsumerStream.open(consumer, { maxMessages: Math.min(initial.maxQueued, 512), onArrival: arrive, paused, into }),
            ConsumerStream.open(replays, { maxMessages: 64, onArrival: arrive, paused, into })
          ])
        )
        return [into, ...opened] as const
      }).pipe(
        Effect.map(([into, events, replayed]) => ({
          arrivals: into as Arrivals,
          ended: Effect.raceFirst(events.ended, replayed.ended),
          pause: Effect.zipRight(events.pause, replayed.pause),
          resume: Effect.zipRight(events.resume, replayed.resume)
        }))
      )
      type Arrivals = Queue.Dequeue<JsMsg>
      /** One admission at a time: a message is admitted once, whoever reaches it first. */
      const admission = yield* Effect.makeSemaphore(1)
      /** Held events by key: what a newly arrived event of the key may supersede or duplicate. */
      const keyed = new Map<string, Set<Item>>()
      /** Signals the recoverer that an event arrived while it had none to probe. */
      const arrived = yield* Queue.sliding<void>(1)

      const settle = (msg: JsMsg, how: "ack" | "term" | { nakMs: number }) =>
        Effect.sync(() => {
          const item = held.get(msg)
          held.delete(msg)
          if (item) {
            item.settled = true
            const same = item.envelope.key === undefined ? undefined : keyed.get(item.envelope.key)
            same?.delete(item)
            if (same?.size === 0) keyed.delete(item.envelope.key!)
          }
          if (how === "ack") msg.ack()
          else if (how === "term") msg.term()
          else msg.nak(how.nakMs)
        })

      /** Only the health changes an attempt's result implies; the machine ignores late or stale ones. */
      const feed = (input: HealthMachine.Input) =>
        Effect.gen(function* () {
          const current = yield* SubscriptionRef.get(health)
          const d = yield* SubscriptionRef.get(settings)
          const now = yield* Clock.currentTimeMillis
          if (HealthMachine.transition(current, input, d.health, now).status === current) return
          yield* healthStore.apply(d, input)
        }).pipe(Effect.catchAll((error) => Effect.logWarning("health not updated", error)))

      /** `counted`: counted attempts including this one, if it counts. */
      const decide = (
        d: Destination.Destination,
        item: Item,
        cls: ResponseClass.ResponseClass,
        counted: number
      ): Effect.Effect<Decision> => {
        switch (cls._tag) {
          case "Success":
            return Effect.succeed({ _tag: "Complete" })
          case "Throttled":
            return Effect.succeed({ _tag: "Retry", delayMs: cls.retryAfterMs, counted: false })
          case "Rejected":
            return Effect.succeed({ _tag: "Dead", reason: `rejected by the destination (${cls.reason})` })
          case "Gone":
            return Effect.succeed({ _tag: "Disabled", reason: `the destination answered 410 Gone` })
          case "Failure":
            return Effect.gen(function* () {
              const step = RetryPolicy.nextStep(d.retry, {
                attempts: counted,
                firstAttemptAt: Math.floor(item.msg.info.timestampNanos / 1e6),
                now: yield* Clock.currentTimeMillis,
                random: yield* Random.next
              })
              return step._tag === "RetryAt"
                ? ({ _tag: "Retry", delayMs: step.delayMs, counted: true } as const)
                : ({ _tag: "Dead", reason: step.reason } as const)
            })
        }
      }

      /** What the response says about the destination, for the health machine and the limiter. */
      const judge = (cls: ResponseClass.ResponseClass, probe: boolean): Effect.Effect<void> => {
        switch (cls._tag) {
          case "Success":
            return feed(probe ? HealthMachine.Input.ProbeSucceeded() : HealthMachine.Input.AttemptSucceeded())
          case "Failure":
            return feed(
              probe
                ? HealthMachine.Input.ProbeFailed({ reason: cls.reason })
                : HealthMachine.Input.AttemptFailed({ reason: cls.reason })
            )
          case "Gone":
            return feed(HealthMachine.Input.Gone({ reason: cls.reason }))
          case "Throttled":
            // Alive but overloaded: slow down for everyone, without blaming the event.
            return limiter
              .throttled(cls.retryAfterMs)
              .pipe(Effect.zipRight(probe ? feed(HealthMachine.Input.ProbeSucceeded()) : Effect.void))
          case "Rejected":
            // The destination answered; the event was wrong, not the destination.
            return probe ? feed(HealthMachine.Input.ProbeSucceeded()) : Effect.void
        }
      }

      const recordAttempt = (
        item: Item,
        attemptNo: number,
        startedAt: number,
        result: SendResult,
        cls: ResponseClass.ResponseClass,
        decision: Decision
      ) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          yield* recorder.record(
            new Fact.AttemptFinished({
              id: Envelope.makeEventId(),
              eventId: item.envelope.id,
              destinationId: initial.id,
              attempt: attemptNo,
              startedAt: new Date(startedAt).toISOString(),
              durationMs: result.durationMs,
              outcome: ResponseClass.toOutcome(cls),
              statusCode: result.status,
              error:
                result.error ??
                (decision._tag === "Dead" || decision._tag === "Disabled"
                  ? decision.reason
                  : cls._tag === "Success"
                    ? null
                    : `HTTP ${result.status}`),
              responseExcerpt: result.responseExcerpt,
              state: stateAfter(decision),
              nextAttemptAt: decision._tag === "Retry" ? new Date(now + decision.delayMs).toISOString() : null
            }, true) // built from checked values on every attempt's path: not validated again
          )
        })

      /** One event lost to the destination, as the ledger counts it. */
      const lossOf = (msg: JsMsg, kind: LossKind) =>
        lostEvents(kind, 1, new Date(Math.floor(msg.info.timestampNanos / 1e6)).toISOString())
      /** Signals the delivering mode that there are losses to report. */
      const lossNoted = yield* Queue.sliding<void>(1)
      const note = (losses: Destination.LostEvents, signal = true) =>
        ledger.add(initial.id, losses).pipe(
          Effect.zipRight(signal ? Queue.offer(lossNoted, undefined) : Effect.void),
          Effect.catchAll((error) => Effect.logWarning("lost event not counted", error))
        )
      /**
       * Counts a lost event before it is settled, so the count survives a crash. A lost
       * `sluice.sync_error` puts back what it reported, to be reported with the next loss or
       * when delivery next resumes — not at once, or a receiver refusing everything would get
       * a report every second.
       */
      const lost = (item: Item, kind: LossKind) => {
        if (item.envelope.type !== Destination.SYNC_ERROR_TYPE) return note(lossOf(item.msg, kind))
        return Either.match(decodeLostEvents(item.envelope.data), {
          onLeft: () => Effect.void,
          onRight: (reported) => note(reported, false)
        })
      }

      /**
       * Tells the destination what it lost since it was last told: a `sluice.sync_error` event
       * on its replay subject, delivered like any other, and an entry in the audit log.
       */
      const reportLosses = Effect.gen(function* () {
        const losses = yield* ledger.take(initial.id)
        if (losses === undefined) return
        const envelope: Envelope.Envelope = {
          id: Envelope.makeEventId(),
          type: Destination.SYNC_ERROR_TYPE,
          occurredAt: new Date(yield* Clock.currentTimeMillis).toISOString(),
          data: { destinationId: initial.id, ...losses }
        }
        yield* Effect.tryPromise(() =>
          js.publish(Subjects.replaySubject(initial.id), Envelope.encodeEnvelope(envelope), {
            msgID: envelope.id,
            expect: { streamName: Subjects.REPLAYS_STREAM }
          })
        ).pipe(
          // Not sent: the losses go back to be reported next time.
          Effect.tapError(() => ledger.add(initial.id, losses))
        )
        yield* recorder.record(
          new Fact.OperatorActed({
            id: Envelope.makeEventId(),
            at: envelope.occurredAt,
            actor: "sluice",
            action: "destination.sync_error_sent",
            destinationId: initial.id,
            details: { eventId: envelope.id, ...losses }
          })
        )
      }).pipe(Effect.catchAll((error) => Effect.logWarning("lost events not reported yet", error)))

      /**
       * Events that left the stream before this destination took them (retention while it was
       * paused, down or behind): those the history has in the stream range now gone, of types
       * it subscribes to, that it has no delivery of — less those it still holds, whose
       * delivery is not recorded yet. Checked from the consumer's ack floor on.
       */
      let checkedUpTo = (yield* Effect.tryPromise(() => consumer.info(true)).pipe(Effect.orDie)).ack_floor.stream_seq
      const countExpired = Effect.gen(function* () {
        const first = (yield* Effect.tryPromise(() => jsm.streams.info(Subjects.EVENTS_STREAM))).state.first_seq
        if (first - 1 <= checkedUpTo) return
        const d = yield* SubscriptionRef.get(settings)
        const counts = (yield* store.countTypesBetween(checkedUpTo, first, d.createdAt, d.id)).filter((c) =>
          Subjects.matchesAny(d.subscriptions, c.type)
        )
        const stillHeld = Array.from(held.keys()).filter(
          (msg) => msg.info.stream === Subjects.EVENTS_STREAM && msg.seq > checkedUpTo && msg.seq < first
        ).length
        const expired = counts.reduce((n, c) => n + c.count, 0) - stillHeld
        checkedUpTo = first - 1
        if (expired <= 0) return
        const since = counts.map((c) => c.firstAt).sort()[0]!
        const until = counts.map((c) => c.lastAt).sort().at(-1)!
        yield* Effect.logWarning(`${expired} events expired from the stream before delivery`)
        yield* note(lostEvents("expired", expired, since, until))
      }).pipe(Effect.catchAll((error) => Effect.logWarning("expired events not checked", error)))

      /**
       * One request for one event, or for a batched destination's transaction of several: waits
       * for a permit and a rate slot (interruptible), then sends, judges, records and settles
       * without interruption, so an outcome is never half-applied. The oldest event's attempts
       * decide the retry. A retry is `hold`: the caller keeps the messages; `nak`: JetStream
       * redelivers them after the delay. `cancelSuperseded`: an event superseded while on the
       * wire is canceled rather than retried (a transaction is retried with the same events).
       */
      const attempt = (
        items: ReadonlyArray<Item>,
        request: (d: Destination.Destination, startedAt: number, attemptNo: number) => SendRequest,
        options: { readonly probe: boolean; readonly onRetry: "hold" | "nak"; readonly cancelSuperseded: boolean }
      ): Effect.Effect<Decision | Superseded> =>
        Effect.gen(function* () {
          const n = yield* permits
          // At full speed the worker pool alone bounds what is in flight; the semaphore only
          // narrows it while a recovering destination ramps up.
          const bounded = n === 1 ? identity : semaphore.withPermits(n)
          return yield* bounded(
            limiter.take.pipe(
              // The attempt starts in its rate slot: its recorded start is what the limit accounts for.
              Effect.flatMap((startedAt) =>
                Effect.gen(function* () {
                  // Canceled by a newer version while it waited for its turn.
                  if (items.every((item) => item.settled)) return superseded
                  const lead = items.reduce((a, b) => (b.counted > a.counted ? b : a))
                  for (const item of items) item.inFlight = true
                  const d = yield* SubscriptionRef.get(settings)
                  const result = yield* sender.send(request(d, startedAt, lead.attempts + 1))
                  const cls = ResponseClass.classify(ResponseClass.exchangeOf(result), yield* Clock.currentTimeMillis)
                  yield* judge(cls, options.probe)
                  const decision = yield* decide(d, lead, cls, lead.counted + 1)
                  let canceled = 0
                  for (const item of items) {
                    const attemptNo = item.attempts + 1
                    item.attempts = attemptNo
                    if (decision._tag === "Retry" && decision.counted) item.counted += 1
                    yield* recordAttempt(item, attemptNo, startedAt, result, cls, decision)
                    // A transaction's events stay committed to it until it is settled.
                    if (options.cancelSuperseded) item.inFlight = false
                    if (decision._tag === "Retry" && options.cancelSuperseded && item.supersededBy !== undefined) {
                      yield* recordState(item.envelope.id, "canceled", `superseded by event ${item.supersededBy}`, {
                        canceledBy: item.supersededBy
                      })
                      yield* settle(item.msg, "ack")
                      canceled += 1
                      continue
                    }
                    switch (decision._tag) {
                      case "Complete":
                        yield* rememberDelivered(item)
                        yield* settle(item.msg, "ack")
                        break
                      case "Disabled":
                        yield* lost(item, "disabled")
                        yield* settle(item.msg, "ack")
                        break
                      case "Dead":
                        yield* lost(item, "dead")
                        yield* settle(item.msg, "term")
                        break
                      case "Retry":
                        if (options.onRetry === "nak") yield* settle(item.msg, { nakMs: decision.delayMs })
                    }
                  }
                  return canceled === items.length ? superseded : decision
                }).pipe(Effect.uninterruptible)
              )
            )
          )
        })

      /** One event, POSTed on its own. */
      const exchange = (item: Item, options: { readonly probe: boolean; readonly onRetry: "hold" | "nak" }) =>
        attempt(
          [item],
          (d, startedAt, attemptNo) => ({
            url: d.url,
            method: "POST",
            headers: {
              ...item.envelope.headers,
              "content-type": "application/json",
              "sluice-event-type": item.envelope.type,
              "sluice-attempt": String(attemptNo),
              ...Signer.headers({ secret: d.secret, id: item.envelope.id, timestamp: Math.floor(startedAt / 1000), body: item.body })
            },
            body: item.body,
            timeoutMs: d.timeoutMs
          }),
          { ...options, cancelSuperseded: true }
        )

      /** A batched destination's transaction: `PUT <url>/transactions/<txnId>` with the events in order. */
      const transact = (items: ReadonlyArray<Item>, txnId: number, probe = false) => {
        const body = `{"txnId":${txnId},"events":[${items.map((item) => item.body).join(",")}]}`
        return attempt(
          items,
          (d, startedAt, attemptNo) => ({
            url: transactionUrl(d.url, txnId),
            method: "PUT",
            headers: {
              "content-type": "application/json",
              "sluice-transaction-id": String(txnId),
              "sluice-attempt": String(attemptNo),
              ...Signer.headers({ secret: d.secret, id: `txn_${d.id}_${txnId}`, timestamp: Math.floor(startedAt / 1000), body })
            },
            body,
            timeoutMs: d.timeoutMs
          }),
          { probe, onRetry: "hold", cancelSuperseded: false }
        )
      }

      /** A poison message: recorded dead with why, counted lost, and terminated so JetStream never redelivers it. */
      const deadOnArrival = (msg: JsMsg, eventId: string, reason: string) =>
        Effect.gen(function* () {
          yield* Effect.logWarning(`dead on arrival (stream ${msg.info.stream} seq ${msg.seq}): ${reason}`)
          yield* recordState(eventId, "dead", reason)
          yield* note(lossOf(msg, "dead"))
          yield* settle(msg, "term")
        })

      /** A delivery that ends without an attempt: dead on arrival, canceled, ignored, duplicate, disabled. */
      const recordState = (
        eventId: string,
        state: States.DeliveryState,
        reason: string,
        refs: { canceledBy?: string; duplicateOf?: string; ignoredReason?: string } = {}
      ) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          yield* recorder.record(
            new Fact.DeliveryChanged({
              id: Envelope.makeEventId(),
              eventId,
              destinationId: initial.id,
              state,
              at: new Date(now).toISOString(),
              reason,
              canceledBy: refs.canceledBy ?? null,
              duplicateOf: refs.duplicateOf ?? null,
              ignoredReason: refs.ignoredReason ?? null
            }, true) // built from checked values: not validated again
          )
        })

      /** The newest delivered version of the key, so stale and repeated versions are recognised later. */
      const rememberDelivered = (item: Item) => {
        const { key, version, id } = item.envelope
        return key === undefined || version === undefined
          ? Effect.void
          : keyVersions
              .completed(initial.id, key, { version, eventId: id })
              .pipe(Effect.catchAll((error) => Effect.logWarning("delivered version not remembered", error)))
      }

      /** The first event with this idempotency key; when the store is unreachable, assume this one (deliver rather than drop). */
      const firstWithKey = (envelope: Envelope.Envelope) =>
        envelope.idempotencyKey === undefined
          ? Effect.succeed(envelope.id)
          : idempotency.claim(envelope.idempotencyKey, envelope.id).pipe(
              Effect.catchAll((error) =>
                Effect.logWarning("idempotency key not checked", error).pipe(Effect.as(envelope.id))
              )
            )

      /**
       * Takes a message in: settles at once what this destination should not get (undecodable,
       * not subscribed, a repeat, stale or duplicate) and cancels what the new event supersedes;
       * anything else becomes a held item.
       */
      const admit = (msg: JsMsg): Effect.Effect<Option.Option<Item>> =>
        Effect.gen(function* () {
          // Settled already, or admitted already (and handed on by whoever admitted it).
          if (held.get(msg) !== null) return Option.none()
          const decoded = Either.flatMap(Poison.bodyText(msg), (body) =>
            Envelope.decodeEnvelope(body).pipe(
              Either.mapBoth({ onLeft: (error) => error.message, onRight: (envelope) => ({ body, envelope }) })
            )
          )
          if (Either.isLeft(decoded)) {
            yield* deadOnArrival(msg, Poison.poisonId(msg), `undecodable event: ${decoded.left}`)
            return Option.none()
          }
          const { body, envelope } = decoded.right
          const d = yield* SubscriptionRef.get(settings)
          if (!Subjects.matchesAny(d.subscriptions, envelope.type) && envelope.type !== Destination.SYNC_ERROR_TYPE) {
            yield* settle(msg, "ack")
            return Option.none()
          }
          const unsendable = Poison.unsendableHeaders(envelope.headers)
          if (unsendable !== undefined) {
            yield* deadOnArrival(msg, envelope.id, `undeliverable event: ${unsendable}`)
            return Option.none()
          }
          // An operator asked for this one again: deliver it whatever came since.
          const replayed = msg.info.stream === Subjects.REPLAYS_STREAM
          const first = replayed ? envelope.id : yield* firstWithKey(envelope)
          if (first !== envelope.id) {
            yield* recordState(envelope.id, "duplicate", `idempotency key already used by event ${first}`, {
              duplicateOf: first
            })
            yield* settle(msg, "ack")
            return Option.none()
          }
          const same = envelope.key === undefined ? undefined : keyed.get(envelope.key)
          const delivered =
            replayed || envelope.key === undefined || envelope.version === undefined
              ? undefined
              : yield* keyVersions.get(initial.id, envelope.key).pipe(
                  Effect.catchAll((error) =>
                    Effect.logWarning("delivered version not known", error).pipe(Effect.as(undefined))
                  )
                )
          const verdict: Admission.Verdict = replayed ? { _tag: "Deliver", cancel: [] } : Admission.decide(
            envelope,
            same === undefined ? [] : Array.from(same, (i) => ({ id: i.envelope.id, version: i.envelope.version, inFlight: i.inFlight })),
            delivered,
            d.latestOnly
          )
          switch (verdict._tag) {
            case "AlreadyDelivered":
              yield* settle(msg, "ack")
              return Option.none()
            case "Ignored":
              yield* recordState(envelope.id, "ignored", verdict.reason, { ignoredReason: verdict.reason })
              yield* settle(msg, "ack")
              return Option.none()
            case "Duplicate":
              yield* recordState(envelope.id, "duplicate", `version already accepted as event ${verdict.of}`, {
                duplicateOf: verdict.of
              })
              yield* settle(msg, "ack")
              return Option.none()
            case "Deliver":
              // Too late to cancel what is on the wire: it is canceled after its attempt unless that succeeds.
              if ((envelope.supersedes === true || d.latestOnly) && envelope.version !== undefined) {
                for (const busy of same ?? []) {
                  const older =
                    busy.envelope.version !== undefined &&
                    Envelope.compareVersions(busy.envelope.version, envelope.version) === -1
                  if (busy.inFlight && older) busy.supersededBy = envelope.id
                }
              }
              for (const old of verdict.cancel) {
                const item = Array.from(same ?? []).find((i) => i.envelope.id === old.id)
                if (item === undefined || item.settled || item.inFlight) continue
                yield* recordState(old.id, "canceled", `superseded by event ${envelope.id}`, { canceledBy: envelope.id })
                yield* settle(item.msg, "ack")
              }
          }
          const before = msg.info.deliveryCount - 1
          const item: Item = {
            msg,
            envelope,
            body,
            attempts: before,
            counted: before,
            inFlight: false,
            settled: false,
            supersededBy: undefined
          }
          held.set(msg, item)
          if (envelope.key !== undefined) {
            const set = keyed.get(envelope.key) ?? new Set<Item>()
            set.add(item)
            keyed.set(envelope.key, set)
          }
          yield* Queue.offer(arrived, undefined)
          return Option.some(item)
        }).pipe(Effect.uninterruptible)

      /** Admits a batch as it came from JetStream before acting on any, so an event superseded within the batch is never sent. */
      const admitAll = (msgs: Iterable<JsMsg>) =>
        Effect.gen(function* () {
          const items: Array<Item> = []
          for (const msg of msgs) {
            const admitted = yield* admit(msg)
            if (Option.isSome(admitted)) items.push(admitted.value)
          }
          return items.filter((item) => !item.settled)
        }).pipe(admission.withPermits(1))

      /** Everything held, oldest first, admitted: what a mode starts from. */
      const carried = Effect.suspend(() =>
        Effect.gen(function* () {
          const msgs = Array.from(held.keys()).sort(streamOrder)
          yield* admitAll(msgs.filter((msg) => held.get(msg) === null))
          return msgs.flatMap((msg) => {
            const item = held.get(msg)
            if (!item || item.settled) return []
            // Nothing is on the wire between modes: a transaction left unfinished is formed anew.
            item.inFlight = false
            return [item]
          })
        })
      )

      /**
       * Admits arrivals until interrupted, handing the survivors on. A message read but not yet
       * admitted when interrupted stays held and is admitted by the next mode's `carried`.
       */
      const consume = (arrivals: Arrivals, onItems: (items: ReadonlyArray<Item>) => Effect.Effect<void>) =>
        Queue.takeBetween(arrivals, 1, 512).pipe(Effect.flatMap(admitAll), Effect.flatMap(onItems), Effect.forever)

      /** Keyed events of an ordered destination wait in their key's lane; the rest are independent. */
      const inLane = (item: Item) => initial.ordering === "key" && item.envelope.key !== undefined

      /**
       * Delivers what is carried, then what arrives, until interrupted: requests in flight finish,
       * the rest stays held. A fixed pool of workers (the destination's concurrency) takes ready
       * events in turn, so a backlog of thousands costs queue entries, not waiting fibers. A
       * lane's next event becomes ready only when its head is settled; an unordered event that
       * fails is released to JetStream with its back-off (attempts survive restarts), a keyed
       * one keeps its lane's place and becomes ready again after its back-off. A batched
       * destination's workers gather ready events (and the events queued behind them in their
       * lanes, in order) into transactions instead.
       */
      const deliverSession = (arrivals: Arrivals) => Effect.scoped(
        Effect.gen(function* () {
          const ready = yield* Queue.unbounded<Item>()
          const lanes = new Map<string, Array<Item>>()
          // Workers and the back-off timers of keyed retries: a defect in any fails the session.
          const fibers = yield* FiberSet.make<void>()
          const dispatch = (item: Item) => {
            if (inLane(item)) {
              const lane = lanes.get(item.envelope.key!)
              if (lane) {
                lane.push(item)
                return
              }
              lanes.set(item.envelope.key!, [item])
            }
            Queue.unsafeOffer(ready, item)
          }
          /** The item, its lane's head, is settled: the lane's next unsettled event becomes ready. */
          const finished = (item: Item) => {
            if (!inLane(item)) return
            const lane = lanes.get(item.envelope.key!)
            if (lane?.[0] !== item) return
            lane.shift()
            while (lane[0]?.settled) lane.shift()
            if (lane.length === 0) lanes.delete(item.envelope.key!)
            else Queue.unsafeOffer(ready, lane[0]!)
          }
          const worker = Effect.gen(function* () {
            const item = yield* Queue.take(ready)
            if (item.settled) return finished(item)
            const decision = yield* exchange(item, { probe: false, onRetry: inLane(item) ? "hold" : "nak" })
            if (decision._tag === "Retry" && inLane(item)) {
              yield* FiberSet.run(fibers, Effect.sleep(decision.delayMs).pipe(Effect.zipRight(Queue.offer(ready, item))))
            } else {
              finished(item)
            }
          }).pipe(Effect.forever)
          const batchWorker = (policy: typeof Destination.BatchPolicy.Type) =>
            Effect.gen(function* () {
              // Ready events (lane heads among them) gathered for up to maxWaitMs…
              const heads: Array<Item> = []
              const gather = (item: Item) => (item.settled ? finished(item) : heads.push(item))
              gather(yield* Queue.take(ready))
              const deadline = (yield* monotonicMillis) + policy.maxWaitMs
              while (heads.length > 0 && heads.length < policy.maxEvents) {
                const wait = deadline - (yield* monotonicMillis)
                if (wait <= 0) break
                const next = yield* Queue.take(ready).pipe(Effect.timeoutOption(wait))
                if (Option.isNone(next)) break
                gather(next.value)
              }
              // …then, with the room left, the events queued behind them in their lanes, in order.
              const batch = [...heads]
              for (const head of heads) {
                if (!inLane(head)) continue
                for (const item of lanes.get(head.envelope.key!)!.slice(1)) {
                  if (batch.length >= policy.maxEvents) break
                  if (!item.settled) batch.push(item)
                }
              }
              if (batch.length === 0) return
              // Committed to this transaction: a newer version no longer cancels them.
              for (const item of batch) item.inFlight = true
              const txnId = yield* transactionIds.next(initial.id).pipe(Effect.orDie)
              for (;;) {
                const decision = yield* transact(batch, txnId)
                if (decision._tag !== "Retry") break
                yield* Effect.sleep(decision.delayMs)
              }
              for (const item of batch) finished(item)
            }).pipe(Effect.forever)
          const dispatchAll = (items: ReadonlyArray<Item>) => Effect.sync(() => items.forEach(dispatch))
          yield* Effect.flatMap(carried, dispatchAll)
          // Deliverable again, or still: whatever was lost meanwhile is reported, and later
          // losses a moment after they happen, together with any that follow at once.
          yield* reportLosses.pipe(
            Effect.zipRight(Queue.take(lossNoted).pipe(Effect.zipRight(Effect.sleep(REPORT_AFTER)), Effect.zipRight(reportLosses), Effect.forever)),
            Effect.forkScoped
          )
          const work = initial.batch === null ? worker : batchWorker(initial.batch)
          for (let i = 0; i < initial.maxConcurrency; i++) yield* FiberSet.run(fibers, work)
          // A defect fails the session, and the supervisor restarts the actor.
          return yield* firstOf(consume(arrivals, dispatchAll), FiberSet.join(fibers).pipe(Effect.zipRight(Effect.never)))
        })
      )

      /** While disabled: events are recorded `disabled` (replayable later) instead of piling up. */
      const markDisabled = (items: ReadonlyArray<Item>) =>
        Effect.forEach(
          items,
          (item) =>
            Effect.gen(function* () {
              const status = yield* SubscriptionRef.get(health)
              yield* recordState(item.envelope.id, "disabled", `destination disabled: ${status.reason}`)
              yield* lost(item, "disabled")
              yield* settle(item.msg, "ack")
            }).pipe(Effect.uninterruptible),
          { discard: true }
        )
      const disabledSession = (arrivals: Arrivals) =>
        Effect.flatMap(carried, markDisabled).pipe(Effect.zipRight(consume(arrivals, markDisabled)))

      /**
       * While down: events keep being admitted (so newer versions still cancel older ones) but
       * not sent; the oldest held event is retried on the probe back-off until one gets through.
       */
      const recoverer = (arrivals: Arrivals) => Effect.scoped(
        Effect.gen(function* () {
          const d = yield* SubscriptionRef.get(settings)
          yield* feed(HealthMachine.Input.Tick()).pipe(
            Effect.repeat(Schedule.spaced(tickEvery(d.health))),
            Effect.forkScoped
          )
          yield* consume(arrivals, () => Effect.void).pipe(Effect.forkScoped)
          let probeAttempt = (yield* SubscriptionRef.get(health)).probeAttempt
          // A batched destination is probed with a one-event transaction, retried under its id.
          let probeTxn: { readonly item: Item; readonly txnId: number } | undefined
          const probeWith = (oldest: Item) =>
            initial.batch === null
              ? exchange(oldest, { probe: true, onRetry: "hold" })
              : Effect.gen(function* () {
                  if (probeTxn?.item !== oldest) {
                    probeTxn = { item: oldest, txnId: yield* transactionIds.next(initial.id).pipe(Effect.orDie) }
                  }
                  oldest.inFlight = true
                  return yield* transact([oldest], probeTxn.txnId, true)
                })
          for (;;) {
            yield* Effect.sleep(yield* HealthMachine.nextProbeDelay(d.health, probeAttempt))
            for (;;) {
              const oldest = (yield* carried)[0]
              if (oldest === undefined) {
                yield* Queue.take(arrived)
                continue
              }
              const decision = yield* probeWith(oldest)
              // A dead or canceled event says nothing about the destination: probe the next one at once.
              if (decision._tag === "Dead" || decision._tag === "Superseded") continue
              if (decision._tag === "Retry" && decision.counted) probeAttempt += 1
              break
            }
          }
        })
      )

      const currentMode = Effect.map(SubscriptionRef.get(health), (status) => modeOf(status.state))
      /** Completes when health leaves the modes `leaving` accepts. */
      const until = (leaving: (mode: Mode) => boolean) =>
        health.changes.pipe(Stream.filter((status) => leaving(modeOf(status.state))), Stream.runHead, Effect.asVoid)

      const { arrivals, ended, pause, resume } = yield* pulling
      yield* countExpired.pipe(Effect.repeat(Schedule.spaced(EXPIRY_CHECK_EVERY)), Effect.forkScoped)
      const modes = Effect.gen(function* () {
        const mode = yield* currentMode
        yield* Effect.logDebug(`actor mode: ${mode}`)
        if (mode === "wait") {
          // Paused: nothing more is pulled, so new events wait in JetStream; what was held stays held.
          yield* pause
          yield* until((next) => next !== "wait")
          yield* resume
          // What expired while nothing was pulled is counted before delivery starts again.
          return yield* countExpired
        }
        const work = mode === "deliver" ? deliverSession(arrivals) : mode === "probe" ? recoverer(arrivals) : disabledSession(arrivals)
        yield* firstOf(work, until((next) => next !== mode))
      }).pipe(Effect.forever)

      yield* Effect.logInfo("destination actor started")
      return yield* firstOf(modes, ended)
    })
  ).pipe(Effect.annotateLogs({ module: "DestinationActor" }))
