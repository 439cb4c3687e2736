import { describe, expect, it, layer } from "@effect/vitest"
import { Subjects } from "@sluice/protocol"
import { Effect, Either, Layer } from "effect"
import { NatsFixture } from "../../../test/helpers/nats.js"
import * as BrokerConfig from "../src/BrokerConfig.js"
import * as Fact from "../src/Fact.js"
import * as Nats from "../src/Nats.js"
import * as Recorder from "../src/Recorder.js"

const attempt = (i: number, excerpt: string | null = null) =>
  new Fact.AttemptFinished({
    id: `fact-${i}`,
    eventId: `evt-${i}`,
    destinationId: "recorder-test",
    attempt: 1,
    startedAt: "2026-12-04T09:00:00.000Z",
    durationMs: 5,
    outcome: "success",
    statusCode: 200,
    error: null,
    responseExcerpt: excerpt,
    state: "completed",
    nextAttemptAt: null
  })

/** Every message in SLUICE_FACTS, decoded: the facts of each. */
const storedMessages = Effect.gen(function* () {
  const { jsm } = yield* Nats.Nats
  const info = yield* Effect.promise(() => jsm.streams.info(Subjects.FACTS_STREAM))
  const messages: Array<ReadonlyArray<Fact.Fact>> = []
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const msg = yield* Effect.promise(() => jsm.streams.getMessage(Subjects.FACTS_STREAM, { seq }))
    if (msg !== null) messages.push(Either.getOrThrow(Fact.decodeAll(msg.string())))
  }
  return messages
})

const recorderOn = Layer.unwrapEffect(
  Effect.map(NatsFixture, (server) =>
    Recorder.layer.pipe(
      Layer.provideMerge(Nats.layer),
      Layer.provide(Layer.succeed(Nats.NatsUrl, server.url)),
      Layer.provide(BrokerConfig.layer(BrokerConfig.defaults))
    ))
)

layer(NatsFixture.layer, { timeout: 30_000 })("Recorder", (it) => {
  it.effect("facts recorded at once are stored together, each exactly once, and each recorder returns once its fact is stored", () =>
    Effect.gen(function* () {
      const facts = Array.from({ length: 1_000 }, (_, i) => attempt(i))
      yield* Effect.forEach(facts, (fact) => Effect.flatMap(Recorder.Recorder, (r) => r.record(fact)), {
        concurrency: "unbounded"
      })
      const messages = yield* storedMessages
      expect(messages.flat().map((f) => f.id).sort()).toEqual(facts.map((f) => f.id).sort())
      // Gathered while earlier publishes were out: far fewer messages than facts.
      expect(messages.length).toBeLessThan(facts.length / 10)
      expect(Math.max(...messages.map((m) => m.length))).toBeLessThanOrEqual(Recorder.MAX_FACTS)
      // One recorded alone is stored as before: the fact itself, under its kind's subject.
      yield* Effect.flatMap(Recorder.Recorder, (r) => r.record(attempt(5_000)))
      const { jsm } = yield* Nats.Nats
      const last = yield* Effect.promise(() => jsm.streams.getMessage(Subjects.FACTS_STREAM, { last_by_subj: "sluice.facts.attempt" }))
      expect(JSON.parse(last!.string()).id).toBe("fact-5000")
    }).pipe(Effect.provide(recorderOn)))
})

describe("Recorder.messages", () => {
  it("splits what gathered into messages under the fact and size limits, in order", () => {
    const small = Array.from({ length: Recorder.MAX_FACTS + 10 }, (_, i) => ({ i, json: "x".repeat(10) }))
    const split = Recorder.messages(small)
    expect(split.map((m) => m.length)).toEqual([Recorder.MAX_FACTS, 10])
    expect(split.flat().map((p) => p.i)).toEqual(small.map((p) => p.i))
    const large = [
      { i: 0, json: "x".repeat(Recorder.MAX_CHARS / 2) },
      { i: 1, json: "x".repeat(Recorder.MAX_CHARS / 2) },
      { i: 2, json: "x".repeat(Recorder.MAX_CHARS * 2) },
      { i: 3, json: "x" }
    ]
    expect(Recorder.messages(large).map((m) => m.map((p) => p.i))).toEqual([[0], [1], [2], [3]])
  })
})
