/**
 * nats-server restarted mid-delivery: a broker is draining a backlog when the server is
 * stopped (SIGTERM) or killed (SIGKILL) and started again on the same port and store. Every
 * event whose publish was acknowledged — before the restart, or by a producer that kept
 * retrying through it — reaches the receiver; a repeat is always the same event with the same
 * `webhook-id`, at most once more, and only of an event that was already in the broker's hands
 * when the server went away (its acknowledgement was lost with the connection, so JetStream
 * handed it out again).
 *
 * Per-key order holds too: a delivery the server sent just before it stopped, and the broker
 * never received, is pending until JetStream's ack wait (30 s) ends; the restarted actor of an
 * ordered destination waits for it rather than deliver newer events of its key first (before
 * it did, ~180 of 660 events arrived out of key order).
 */
import { expect, layer } from "@effect/vitest"
import type { PublishInput } from "@sluice/sdk"
import { Effect, Fiber, Schedule } from "effect"
import { producer, startBroker } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** Published and acknowledged before the restart. */
const BACKLOG = 600
/** Requests received before the server goes away: well into the backlog, far from its end. */
const MID_WAY = 100
/** Published one by one through the restart, each retried until acknowledged. */
const THROUGH = 60
/** DestinationActor.ACK_WAIT_MS: what JetStream hands out again after a lost acknowledgement waits this long. */
const ACK_WAIT_MS = 30_000

const eventIdOf = (request: ReceivedRequest): string => String(request.headers["webhook-id"])

const inputs = (type: string, from: number, n: number): ReadonlyArray<PublishInput> =>
  Array.from({ length: n }, (_, j) => ({
    type,
    // Half on 40 ordered keys, half unordered: both delivery paths are cut.
    ...((from + j) % 2 === 0 ? { key: `order-${(from + j) % 80}` } : {}),
    data: { i: from + j }
  }))

const restartMidDelivery = (destinationId: string, end: (nats: NatsFixture["Type"]) => Effect.Effect<void>) =>
  Effect.gen(function* () {
    const nats = yield* NatsFixture
    const databaseUrl = yield* throwawayDatabase
    const { client } = yield* startBroker({ natsUrl: nats.url, databaseUrl })
    // Slow enough that the backlog is still draining when the server goes away.
    const receiver = yield* scopedReceiver(() => ({ delayMs: 20 }))
    const type = `${destinationId}.event`
    yield* client.destinations.create({
      payload: { id: destinationId, url: receiver.url, subscriptions: [`${destinationId}.>`], maxConcurrency: 4 }
    })
    const sluice = yield* producer(nats.url)
    const acknowledged = (yield* sluice.publishMany(inputs(type, 0, BACKLOG))).map((p) => p.id)

    yield* Effect.promise(() => receiver.waitForCount(MID_WAY, 20_000))
    // A producer that keeps publishing through the restart, retrying each event (same id) until acknowledged.
    const through = yield* Effect.fork(
      Effect.forEach(inputs(type, BACKLOG, THROUGH), (input, j) =>
        sluice.publish({ ...input, id: `${destinationId}-through-${j}` }).pipe(
          Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300, while: (error) => error._tag !== "InvalidEnvelope" }),
          Effect.map((ack) => ack.id)
        )
      )
    )
    yield* end(nats)
    const beforeRestart = receiver.received().length
    expect(beforeRestart).toBeLessThan(BACKLOG)
    yield* nats.restart
    acknowledged.push(...(yield* Fiber.join(through)))
    // Published after the broker is surely back: its first arrival marks the time from which nothing may repeat.
    const marker = (yield* sluice.publish({ type, id: `${destinationId}-marker`, data: { i: -1 } })).id
    acknowledged.push(marker)

    const missing = () => {
      const seen = new Set(receiver.received().map(eventIdOf))
      return acknowledged.filter((id) => !seen.has(id))
    }
    yield* waitForEffect(Effect.sync(() => missing().length === 0), {
      description: () => `all ${acknowledged.length} acknowledged events at the receiver; missing: ${missing().slice(0, 10).join(", ")}`,
      // A delivery lost with the connection comes back after JetStream's ack wait.
      // and the ordered destination's restarted actor waits that long before it pulls.
      timeoutMs: 2 * ACK_WAIT_MS + 30_000
    })

    const requests = receiver.received()
    expect(new Set(requests.map(eventIdOf))).toEqual(new Set(acknowledged))
    // Repeats: at most one per event, and only of events first sent before the broker was surely back.
    const markerAt = requests.find((r) => eventIdOf(r) === marker)!.n
    const copies = new Map<string, Array<ReceivedRequest>>()
    for (const r of requests) copies.set(eventIdOf(r), [...(copies.get(eventIdOf(r)) ?? []), r])
    const repeats = [...copies.entries()].filter(([, c]) => c.length > 1)
    expect(repeats.filter(([, c]) => c.length > 2 || c[0]!.n > markerAt).map(([id, c]) => `${id}: ${c.map((r) => r.n).join(", ")}`)).toEqual([])

    // Per key, first arrivals in publish order (a repeat of an older event is a repeat, not a reordering).
    const firstArrivals = new Map<string, Array<number>>()
    for (const [, [first]] of copies) {
      const body = first!.json as { key?: string; data: { i: number } }
      if (body.key !== undefined) firstArrivals.set(body.key, [...(firstArrivals.get(body.key) ?? []), body.data.i])
    }
    const outOfOrder = [...firstArrivals].filter(([, is]) => is.some((i, k) => k > 0 && i < is[k - 1]!))
    expect(outOfOrder.map(([key, is]) => `${key}: ${is.join(", ")}`)).toEqual([])
  })

layer(NatsFixture.layer, { timeout: 120_000, excludeTestServices: true })("nats-server restarted mid-delivery", (it) => {
  it.scoped("stopped (SIGTERM) and started again: every acknowledged event delivered, repeats bounded", () =>
    restartMidDelivery("natsterm", (nats) => nats.stop), 180_000
  )

  it.scoped("killed (SIGKILL) and started again: every acknowledged event delivered, repeats bounded", () =>
    restartMidDelivery("natskill", (nats) => nats.kill), 180_000
  )
})
