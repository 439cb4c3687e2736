/**
 * The producer SDK against a real nats-server: a publish resolves only once the event is in
 * SLUICE_EVENTS, idempotency keys store one event, batches keep their order, bad input sends
 * nothing, and a missing stream or a lost server fail with errors that say what to do.
 */
import { assert, describe, expect, it, layer } from "@effect/vitest"
import type { JetStreamManager } from "@nats-io/jetstream"
import { jetstreamManager } from "@nats-io/jetstream"
import { connect as connectNats } from "@nats-io/transport-node"
import { Envelope, Subjects } from "@sluice/protocol"
import { connect, InvalidEnvelope, PublishTimeout, Sluice } from "@sluice/sdk"
import { Context, Effect, Either, Layer } from "effect"
import { ensureStreams } from "../../packages/broker/src/Streams.js"
import { NatsFixture, tempNatsServer } from "../helpers/nats.js"

/** A plain JetStream manager on `url` to look at what was stored; streams created unless told not to. */
const inspector = (url: string, options: { readonly createStreams: boolean } = { createStreams: true }) =>
  Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.promise(() => connectNats({ servers: url })),
      (nc) => Effect.promise(() => nc.close())
    )
    const jsm = yield* Effect.promise(() => jetstreamManager(nc))
    if (options.createStreams) yield* Effect.promise(() => ensureStreams(jsm))
    return jsm
  })

const storedCount = (jsm: JetStreamManager) =>
  Effect.promise(() => jsm.streams.info(Subjects.EVENTS_STREAM)).pipe(Effect.map((info) => info.state.messages))

const storedMessage = (jsm: JetStreamManager, seq: number) =>
  Effect.promise(() => jsm.streams.getMessage(Subjects.EVENTS_STREAM, { seq })).pipe(
    Effect.flatMap(Effect.fromNullable),
    Effect.orDie
  )

/** The Sluice service connected to this file's server for the duration of one test. */
const sluiceOnFixture = Effect.gen(function* () {
  const nats = yield* NatsFixture
  const context = yield* Layer.build(Sluice.layer({ servers: nats.url }))
  return Context.get(context, Sluice.Sluice)
})

// Live services: nats.js waits in real time.
layer(NatsFixture.layer, { excludeTestServices: true })("publish", (it) => {
  it.scoped("resolves with the id once the event is stored, with its headers", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const jsm = yield* inspector(nats.url)
      const sluice = yield* sluiceOnFixture

      const result = yield* sluice.publish({ type: "order.created", key: "order-7", version: 3, data: { total: 42 } })
      expect(result.duplicate).toBe(false)
      expect(result.id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)

      const stored = yield* storedMessage(jsm, result.seq)
      expect(stored.subject).toBe("sluice.events.order.created")
      expect(stored.header.get("Nats-Msg-Id")).toBe(result.id)
      expect(stored.header.get("Sluice-Event-Id")).toBe(result.id)
      expect(stored.header.get("Sluice-Type")).toBe("order.created")
      expect(stored.header.get("Sluice-Key")).toBe("order-7")
      const envelope = Either.getOrThrow(Envelope.decodeEnvelope(stored.string()))
      expect(envelope).toMatchObject({ id: result.id, type: "order.created", key: "order-7", version: 3, data: { total: 42 } })
    })
  )

  it.scoped("stores one event for an idempotency key published twice and returns its id both times", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const jsm = yield* inspector(nats.url)
      const client = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: nats.url })),
        (client) => Effect.promise(() => client.close())
      )
      const before = yield* storedCount(jsm)

      const input = { type: "payment.captured", idempotencyKey: "checkout-981", data: { amount: 10 } }
      const first = yield* Effect.promise(() => client.publish(input))
      const second = yield* Effect.promise(() => client.publish(input))

      expect(first.duplicate).toBe(false)
      expect(second).toEqual({ id: first.id, seq: first.seq, duplicate: true })
      expect(yield* storedCount(jsm)).toBe(before + 1)
      expect((yield* storedMessage(jsm, first.seq)).header.get("Nats-Msg-Id")).toBe("idem:checkout-981")
    })
  )

  it.scoped("publishMany stores 1,000 events in input order", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const jsm = yield* inspector(nats.url)
      const sluice = yield* sluiceOnFixture
      const before = yield* storedCount(jsm)

      const inputs = Array.from({ length: 1000 }, (_, i) => ({ type: "bulk.imported", key: `row-${i % 7}`, data: { i } }))
      const results = yield* sluice.publishMany(inputs)

      expect(results).toHaveLength(1000)
      expect(yield* storedCount(jsm)).toBe(before + 1000)
      expect(new Set(results.map((r) => r.id)).size).toBe(1000)
      // ULIDs grow with creation and sequences with arrival: both follow the input order.
      expect(results.map((r) => r.id)).toEqual([...results.map((r) => r.id)].sort())
      expect(results.map((r) => r.seq)).toEqual(results.map((_, i) => results[0]!.seq + i))
      for (const i of [0, 1, 499, 998, 999]) {
        const stored = yield* storedMessage(jsm, results[i]!.seq)
        expect(stored.header.get("Sluice-Event-Id")).toBe(results[i]!.id)
        expect(stored.json<{ data: { i: number } }>().data.i).toBe(i)
      }
    })
  )

  it.scoped("close() lets publishes still awaiting their ack finish, then refuses new ones", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const jsm = yield* inspector(nats.url)
      const client = yield* Effect.promise(() => connect({ servers: nats.url }))

      const pending = client.publishMany(Array.from({ length: 50 }, () => ({ type: "audit.logged" })))
      yield* Effect.promise(() => client.close())
      const results = yield* Effect.promise(() => pending)

      expect(results).toHaveLength(50)
      expect((yield* storedMessage(jsm, results[49]!.seq)).header.get("Sluice-Event-Id")).toBe(results[49]!.id)
      const afterClose = yield* Effect.promise(() => client.publish({ type: "audit.logged" }).catch((e: unknown) => e))
      expect(String(afterClose)).toContain("closed")
    })
  )

  it.scoped("sends nothing when an input is invalid, naming the field (and the index in a batch)", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const jsm = yield* inspector(nats.url)
      const client = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: nats.url })),
        (client) => Effect.promise(() => client.close())
      )
      const before = yield* storedCount(jsm)

      const single = yield* Effect.promise(() => client.publish({ type: "order.created", version: -1 }).catch((e: unknown) => e))
      expect(single).toBeInstanceOf(InvalidEnvelope)
      expect(single).toMatchObject({ _tag: "InvalidEnvelope", field: "version" })

      const valid = { type: "order.created" }
      const batch = yield* Effect.promise(() =>
        client.publishMany([valid, valid, valid, { type: "order created" }, valid]).catch((e: unknown) => e)
      )
      expect(batch).toMatchObject({ _tag: "InvalidEnvelope", field: "[3].type" })
      expect((batch as InvalidEnvelope).message).toMatch(/^\[3\]\.type: /)

      expect(yield* storedCount(jsm)).toBe(before)
    })
  )
})

describe("publish without a usable stream", () => {
  it.scoped("fails with StreamNotFound when the broker never created SLUICE_EVENTS", () =>
    Effect.gen(function* () {
      const server = yield* tempNatsServer
      const jsm = yield* inspector(server.url, { createStreams: false })
      const context = yield* Layer.build(Sluice.layer({ servers: server.url }))

      const error = yield* Context.get(context, Sluice.Sluice).publish({ type: "order.created" }).pipe(Effect.flip)

      expect(error._tag).toBe("StreamNotFound")
      expect(error.message).toBe("stream SLUICE_EVENTS not found — is the Sluice broker running?")
      const streams = yield* Effect.promise(() => jsm.streams.names().next())
      expect(streams).not.toContain(Subjects.EVENTS_STREAM)
    })
  )

  it.scoped("fails with PublishTimeout when the server is gone; retrying with the same id stores it once", () =>
    Effect.gen(function* () {
      const server = yield* tempNatsServer
      yield* Effect.scoped(inspector(server.url))
      const context = yield* Layer.build(Sluice.layer({ servers: server.url, ackTimeoutMs: 300 }))
      const sluice = Context.get(context, Sluice.Sluice)

      yield* server.kill
      const error = yield* sluice.publish({ type: "order.created", id: "evt-timeout-1" }).pipe(Effect.flip)
      assert.instanceOf(error, PublishTimeout)
      expect(error.eventId).toBe("evt-timeout-1")
      expect(error.message).toContain("retry later with the same id")

      // What a producer does with a PublishTimeout: retry later with the same id.
      yield* server.restart
      const retried = yield* sluice
        .publish({ type: "order.created", id: error.eventId })
        .pipe(Effect.retry({ while: (e) => e._tag === "PublishTimeout", times: 50 }))
      expect(retried.id).toBe("evt-timeout-1")
      const jsm = yield* inspector(server.url)
      expect(yield* storedCount(jsm)).toBe(1)
    })
  )
})
