/**
 * Hands history facts to JetStream. `record` returns once the fact is durable, so an actor
 * acknowledges an event only after what happened to it can no longer be lost — even
 * while the database is down, since the history writer drains the facts stream later.
 */
import { Subjects } from "@sluice/protocol"
import { Context, Effect, Layer, Ref, Schedule } from "effect"
import * as Fact from "./Fact.js"
import { Nats } from "./Nats.js"

export class Recorder extends Context.Tag("@sluice/broker/Recorder")<
  Recorder,
  { readonly record: (fact: Fact.Fact) => Effect.Effect<void> }
>() {}

/** Retries until NATS takes the fact: the caller's ack waits, which keeps delivery at-least-once. */
const untilDurable = Schedule.exponential("50 millis", 2).pipe(Schedule.either(Schedule.spaced("5 seconds")))

export const layer: Layer.Layer<Recorder, never, Nats> = Layer.effect(
  Recorder,
  Effect.gen(function* () {
    const { js } = yield* Nats
    const record = (fact: Fact.Fact) => {
      const publish = Effect.tryPromise(() =>
        js.publish(Subjects.factSubject(Fact.kindOf(fact)), Fact.encode(fact), {
          msgID: fact.id,
          expect: { streamName: Subjects.FACTS_STREAM }
        })
      ).pipe(Effect.tapError((error) => Effect.logWarning("history fact not yet stored in JetStream; retrying", error)))
      // Only a failed publish sets up the retry schedule: on every attempt's path, that was
      // several times the cost of the publish's own effect.
      return publish.pipe(
        Effect.catchAll(() => Effect.retry(publish, untilDurable).pipe(Effect.orDie)),
        Effect.asVoid
      )
    }
    return { record }
  })
)

/** Keeps facts in memory, for unit tests that look at what was recorded. */
export const layerMemory = (facts: Ref.Ref<ReadonlyArray<Fact.Fact>>): Layer.Layer<Recorder> =>
  Layer.succeed(Recorder, { record: (fact) => Ref.update(facts, (all) => [...all, fact]) })
