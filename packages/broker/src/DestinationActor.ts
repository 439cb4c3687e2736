/**
 * One actor per destination: pulls the destination's durable consumer, keeps events of one
 * key in order, delivers them over HTTP within the destination's concurrency, and settles
 * each JetStream message only after the outcome is recorded.
 */
import type { Consumer, ConsumerConfig, JsMsg } from "@nats-io/jetstream"
import { AckPolicy, DeliverPolicy, JetStreamApiCodes, JetStreamApiError } from "@nats-io/jetstream"
import { nanos } from "@nats-io/transport-node"
import type { Destination } from "@sluice/protocol"
import { Envelope, Subjects } from "@sluice/protocol"
import { Clock, Effect, Either, FiberSet, Option, Random, Schedule, Stream } from "effect"
import * as Fact from "./Fact.js"
import { HttpSender } from "./HttpSender.js"
import { Nats } from "./Nats.js"
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
}

/** What to do with an event after an attempt. */
type Decision =
  | { readonly _tag: "Complete" }
  | { readonly _tag: "Retry"; readonly delayMs: number; readonly counted: boolean }
  | { readonly _tag: "Dead"; readonly reason: string }

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
 * destination. A new destination starts with events published from now on.
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
        jsm.consumers.add(Subjects.EVENTS_STREAM, { ...desired, deliver_policy: DeliverPolicy.New })
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

/** Removes the destination's consumer (the destination was deleted). */
export const removeConsumer = (destinationId: string) =>
  Effect.gen(function* () {
    const { jsm } = yield* Nats
    yield* Effect.tryPromise(() => jsm.consumers.delete(Subjects.EVENTS_STREAM, Subjects.destinationConsumer(destinationId))).pipe(
      Effect.catchIf(
        (error) => error.error instanceof JetStreamApiError && error.error.code === JetStreamApiCodes.ConsumerNotFound,
        () => Effect.void
      )
    )
  })

/** Runs the actor until interrupted; fails if its consumer goes away (the supervisor restarts it). */
export const run = (destination: Destination.Destination) =>
  Effect.scoped(
    Effect.gen(function* () {
      const consumer: Consumer = yield* ensureConsumer(destination)
      const sender = yield* HttpSender
      const recorder = yield* Recorder
      const semaphore = yield* Effect.makeSemaphore(destination.maxConcurrency)

      // Messages this actor holds unacknowledged. Released for redelivery when the actor stops,
      // kept alive with heartbeats while it runs (long retries, slow destinations).
      const held = new Set<JsMsg>()
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          for (const msg of held) msg.nak()
          held.clear()
        })
      )
      const fibers = yield* FiberSet.make()
      yield* Effect.sync(() => {
        for (const msg of held) msg.working()
      }).pipe(Effect.repeat(Schedule.spaced(ACK_WAIT_MS / 3)), Effect.forkScoped)

      const settle = (msg: JsMsg, how: "ack" | "term" | { nakMs: number }) =>
        Effect.sync(() => {
          held.delete(msg)
          if (how === "ack") msg.ack()
          else if (how === "term") msg.term()
          else msg.nak(how.nakMs)
        })

      const attempt = (item: Item, attemptNo: number) =>
        Effect.gen(function* () {
          const startedAt = yield* Clock.currentTimeMillis
          const timestamp = Math.floor(startedAt / 1000)
          const result = yield* semaphore.withPermits(1)(
            sender.send({
              url: destination.url,
              method: "POST",
              headers: {
                ...item.envelope.headers,
                "content-type": "application/json",
                "sluice-event-type": item.envelope.type,
                "sluice-attempt": String(attemptNo),
                ...Signer.headers({ secret: destination.secret, id: item.envelope.id, timestamp, body: item.body })
              },
              body: item.body,
              timeoutMs: destination.timeoutMs
            })
          )
          const now = yield* Clock.currentTimeMillis
          const cls = ResponseClass.classify(ResponseClass.exchangeOf(result), now)
          return { startedAt, result, cls }
        })

      const decide = (item: Item, cls: ResponseClass.ResponseClass, counted: number): Effect.Effect<Decision> => {
        switch (cls._tag) {
          case "Success":
            return Effect.succeed({ _tag: "Complete" })
          case "Throttled":
            return Effect.succeed({ _tag: "Retry", delayMs: cls.retryAfterMs, counted: false })
          case "Rejected":
            return Effect.succeed({ _tag: "Dead", reason: "rejected by the destination (4xx)" })
          case "Gone":
            return Effect.succeed({ _tag: "Dead", reason: "the destination answered 410 Gone" })
          case "Failure":
            return Effect.gen(function* () {
              const now = yield* Clock.currentTimeMillis
              const random = yield* Random.next
              const step = RetryPolicy.nextStep(destination.retry, {
                attempts: counted,
                firstAttemptAt: Math.floor(item.msg.info.timestampNanos / 1e6),
                now,
                random
              })
              return step._tag === "RetryAt"
                ? ({ _tag: "Retry", delayMs: step.delayMs, counted: true } as const)
                : ({ _tag: "Dead", reason: step.reason } as const)
            })
        }
      }

      const recordAttempt = (
        item: Item,
        attemptNo: number,
        outcome: Effect.Effect.Success<ReturnType<typeof attempt>>,
        decision: Decision
      ) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          yield* recorder.record(
            new Fact.AttemptFinished({
              id: Envelope.makeEventId(),
              eventId: item.envelope.id,
              destinationId: destination.id,
              attempt: attemptNo,
              startedAt: new Date(outcome.startedAt).toISOString(),
              durationMs: outcome.result.durationMs,
              outcome: ResponseClass.toOutcome(outcome.cls),
              statusCode: outcome.result.status,
              error:
                outcome.result.error ??
                (decision._tag === "Dead" ? decision.reason : outcome.cls._tag === "Success" ? null : `HTTP ${outcome.result.status}`),
              responseExcerpt: outcome.result.responseExcerpt,
              state: decision._tag === "Complete" ? "completed" : decision._tag === "Dead" ? "dead" : "errored",
              nextAttemptAt: decision._tag === "Retry" ? new Date(now + decision.delayMs).toISOString() : null
            })
          )
        })

      /** Without ordering: one attempt, then JetStream redelivers after the back-off (attempts survive restarts). */
      const deliverUnordered = (item: Item) =>
        Effect.gen(function* () {
          const attemptNo = item.msg.info.deliveryCount
          const outcome = yield* attempt(item, attemptNo)
          const decision = yield* decide(item, outcome.cls, attemptNo)
          yield* recordAttempt(item, attemptNo, outcome, decision)
          yield* settle(
            item.msg,
            decision._tag === "Complete" ? "ack" : decision._tag === "Dead" ? "term" : { nakMs: decision.delayMs }
          )
        }).pipe(Effect.uninterruptible)

      /** With ordering: the event keeps its key's place and is retried here until it is settled. */
      const deliverInOrder = (item: Item) =>
        Effect.gen(function* () {
          let attemptNo = item.msg.info.deliveryCount
          let counted = attemptNo
          for (;;) {
            const outcome = yield* attempt(item, attemptNo).pipe(Effect.uninterruptible)
            const decision = yield* decide(item, outcome.cls, counted)
            yield* recordAttempt(item, attemptNo, outcome, decision).pipe(Effect.uninterruptible)
            if (decision._tag !== "Retry") {
              return yield* settle(item.msg, decision._tag === "Complete" ? "ack" : "term")
            }
            yield* Effect.sleep(decision.delayMs)
            attemptNo += 1
            if (decision.counted) counted += 1
          }
        })

      const lanes = new Map<string, Array<Item>>()
      const runLane = (key: string, lane: Array<Item>): Effect.Effect<void> =>
        Effect.gen(function* () {
          for (;;) {
            const head = lane[0]
            if (head === undefined) {
              lanes.delete(key)
              return
            }
            yield* deliverInOrder(head)
            lane.shift()
          }
        })

      const dispatch = (msg: JsMsg) =>
        Effect.gen(function* () {
          held.add(msg)
          const body = msg.string()
          const decoded = Envelope.decodeEnvelope(body)
          if (Either.isLeft(decoded)) {
            const now = yield* Clock.currentTimeMillis
            yield* recorder.record(
              new Fact.DeliveryChanged({
                id: Envelope.makeEventId(),
                eventId: msg.headers?.get(Subjects.Headers.eventId) || `seq-${msg.seq}`,
                destinationId: destination.id,
                state: "dead",
                at: new Date(now).toISOString(),
                reason: `undecodable event: ${decoded.left.message}`,
                canceledBy: null,
                duplicateOf: null,
                ignoredReason: null
              })
            )
            return yield* settle(msg, "term")
          }
          const envelope = decoded.right
          if (!Subjects.matchesAny(destination.subscriptions, envelope.type)) {
            return yield* settle(msg, "ack")
          }
          const item: Item = { msg, envelope, body }
          if (destination.ordering === "key" && envelope.key !== undefined) {
            const lane = lanes.get(envelope.key)
            if (lane) {
              lane.push(item)
              return
            }
            const fresh = [item]
            lanes.set(envelope.key, fresh)
            yield* FiberSet.run(fibers, runLane(envelope.key, fresh))
            return
          }
          yield* FiberSet.run(fibers, deliverUnordered(item))
        })

      const messages = yield* Effect.acquireRelease(
        Effect.tryPromise(() => consumer.consume({ max_messages: Math.min(destination.maxQueued, 512) })),
        (m) => Effect.promise(() => m.close().then(() => undefined))
      )
      yield* Effect.logInfo("destination actor started")
      yield* Stream.fromAsyncIterable(messages, (cause) => cause).pipe(Stream.runForEach(dispatch))
      return yield* Effect.dieMessage(`the consumer of destination ${destination.id} stopped delivering messages`)
    })
  ).pipe(Effect.annotateLogs({ module: "DestinationActor", destination: destination.id }))
