/**
 * Hands history facts to JetStream. `record` returns once the fact is durable, so an actor
 * acknowledges an event only after what happened to it can no longer be lost — even
 * while the database is down, since the history writer drains the facts stream later.
 *
 * Facts recorded while earlier ones are on their way are stored together, as one message: a
 * publish and its acknowledgement cost the broker and nats-server far more than a fact's JSON,
 * and every delivery records at least one fact before its event is acknowledged.
 */
import { Envelope, Subjects } from "@sluice/protocol"
import { Context, Deferred, Effect, Layer, Queue, Ref, Schedule } from "effect"
import * as Fact from "./Fact.js"
import { Nats } from "./Nats.js"

export class Recorder extends Context.Tag("@sluice/broker/Recorder")<
  Recorder,
  { readonly record: (fact: Fact.Fact) => Effect.Effect<void> }
>() {}

/** Publishes in flight at once: while they are out, the next facts gather. */
export const PUBLISHERS = 4
/** Facts per message at most. */
export const MAX_FACTS = 256
/** Encoded characters per message at most: even at 3 bytes each, under nats-server's default 1 MiB limit. */
export const MAX_CHARS = 256 * 1024

/** Retries until NATS takes the facts: the callers' acks wait, which keeps delivery at-least-once. */
const untilDurable = Schedule.exponential("50 millis", 2).pipe(Schedule.either(Schedule.spaced("5 seconds")))

interface Pending {
  readonly fact: Fact.Fact
  readonly json: string
  readonly stored: Deferred.Deferred<void>
}

/**
 * Splits the queued facts into messages, in order: at most `MAX_FACTS` and `MAX_CHARS` each
 * (a fact larger than that goes alone).
 */
export const messages = <A extends { readonly json: string }>(pending: ReadonlyArray<A>): ReadonlyArray<ReadonlyArray<A>> => {
  const out: Array<Array<A>> = []
  let current: Array<A> = []
  let bytes = 0
  for (const p of pending) {
    if (current.length > 0 && (current.length >= MAX_FACTS || bytes + p.json.length + 1 > MAX_CHARS)) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(p)
    bytes += p.json.length + 1
  }
  if (current.length > 0) out.push(current)
  return out
}

export const layer: Layer.Layer<Recorder, never, Nats> = Layer.scoped(
  Recorder,
  Effect.gen(function* () {
    const { js } = yield* Nats
    const queue = yield* Queue.unbounded<Pending>()

    /** One message: a lone fact under its kind's subject as before, several as an array. */
    const store = (batch: ReadonlyArray<Pending>) => {
      const single = batch.length === 1 ? batch[0]! : undefined
      const subject = Subjects.factSubject(single === undefined ? "batch" : Fact.kindOf(single.fact))
      const payload = single === undefined ? `[${batch.map((p) => p.json).join(",")}]` : single.json
      // The same id on every retry: a message stored but not acknowledged is not stored twice.
      const msgID = single === undefined ? Envelope.makeEventId() : single.fact.id
      const publish = Effect.tryPromise(() =>
        js.publish(subject, payload, { msgID, expect: { streamName: Subjects.FACTS_STREAM } })
      ).pipe(Effect.tapError((error) => Effect.logWarning("history facts not yet stored in JetStream; retrying", error)))
      // Only a failed publish sets up the retry schedule: it costs more than the publish's own effect.
      return publish.pipe(Effect.catchAll(() => Effect.retry(publish, untilDurable).pipe(Effect.orDie)), Effect.asVoid)
    }

    // Each publisher takes what has gathered, stores it and tells its recorders. Interrupted
    // (the broker stops) before NATS took them, their recorders are interrupted too: their
    // events are not acknowledged, and JetStream delivers them again.
    const publisher = Effect.gen(function* () {
      const taken = Array.from(yield* Queue.takeBetween(queue, 1, MAX_FACTS * 4))
      yield* Effect.forEach(
        messages(taken),
        (batch) =>
          Effect.flatMap(Effect.exit(store(batch)), (exit) =>
            Effect.forEach(batch, (p) => Deferred.done(p.stored, exit), { discard: true })),
        { discard: true }
      ).pipe(Effect.onInterrupt(() => Effect.forEach(taken, (p) => Deferred.interrupt(p.stored), { discard: true })))
    }).pipe(Effect.forever)
    for (let i = 0; i < PUBLISHERS; i++) yield* Effect.forkScoped(publisher)
    yield* Effect.addFinalizer(() =>
      Effect.flatMap(Queue.takeAll(queue), (left) => Effect.forEach(left, (p) => Deferred.interrupt(p.stored), { discard: true })).pipe(
        Effect.zipRight(Queue.shutdown(queue))
      )
    )

    const record = (fact: Fact.Fact) =>
      Effect.flatMap(Deferred.make<void>(), (stored) =>
        Effect.zipRight(Queue.offer(queue, { fact, json: Fact.encode(fact), stored }), Deferred.await(stored)))
    return { record }
  })
)

/** Keeps facts in memory, for unit tests that look at what was recorded. */
export const layerMemory = (facts: Ref.Ref<ReadonlyArray<Fact.Fact>>): Layer.Layer<Recorder> =>
  Layer.succeed(Recorder, { record: (fact) => Ref.update(facts, (all) => [...all, fact]) })
