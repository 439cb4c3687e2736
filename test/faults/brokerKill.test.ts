/**
 * At-least-once across the end of a broker process: a broker delivering a backlog is
 * crashed (SIGKILL) or shut down (SIGTERM) mid-way, a new process takes over the same NATS
 * and data directory, and every published event reaches the receiver — a repeat only ever
 * as the same event with the same `webhook-id`.
 */
import { describe, expect, it } from "@effect/vitest"
import type { PublishInput } from "@sluice/sdk"
import { Effect, Fiber } from "effect"
import { producer } from "../helpers/broker.js"
import type { BrokerProcess, ProcessExit } from "../helpers/brokerProcess.js"
import { startBrokerProcess } from "../helpers/brokerProcess.js"
import { tempNatsServer } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

const EVENTS = 1000
/** Requests received before the broker is ended: well into the backlog, far from its end. */
const MID_WAY = 150
/** DestinationActor.ACK_WAIT_MS: JetStream redelivers a message nobody settled after this long. */
const ACK_WAIT_MS = 30_000

/** A pause this long between events first arriving after the restart means some waited out the ack wait. */
const STALL_MS = 10_000

/** Half the events in per-key order (80 keys), half unordered, so both delivery paths are cut. */
const inputs: ReadonlyArray<PublishInput> = Array.from({ length: EVENTS }, (_, i) => ({
  type: "order.updated",
  ...(i % 2 === 0 ? { key: `order-${i % 160}` } : {}),
  data: { i }
}))

interface Delivered {
  readonly key?: string
  readonly data: { readonly i: number }
}

const eventIdOf = (request: ReceivedRequest): string => (request.json as { id: string }).id

/** `#<index> (<key>)`: which of `inputs` a request carries. */
const describeEvent = (request: ReceivedRequest): string => {
  const event = request.json as Delivered
  return `#${event.data.i}${event.key === undefined ? "" : ` (${event.key})`}`
}

/** An event received more than once, with each copy as `<request n>/attempt <sluice-attempt>`. */
interface Repeat {
  readonly event: string
  /** `n` of the first copy. */
  readonly first: number
  readonly copies: ReadonlyArray<string>
}

const repeated = (requests: ReadonlyArray<ReceivedRequest>): ReadonlyArray<Repeat> => {
  const byEvent = new Map<string, Array<ReceivedRequest>>()
  for (const r of requests) byEvent.set(eventIdOf(r), [...(byEvent.get(eventIdOf(r)) ?? []), r])
  return [...byEvent.values()]
    .filter((copies) => copies.length > 1)
    .map((copies) => ({
      event: describeEvent(copies[0]!),
      first: copies[0]!.n,
      copies: copies.map((r) => `${r.n}/attempt ${String(r.headers["sluice-attempt"])}`)
    }))
}

/** Events that first arrived after a later event of their key: per-key order broken. */
const outOfOrder = (requests: ReadonlyArray<ReceivedRequest>): ReadonlyArray<string> => {
  const seen = new Set<string>()
  const latest = new Map<string, ReceivedRequest>()
  const broken: Array<string> = []
  for (const r of requests) {
    if (seen.has(eventIdOf(r))) continue
    seen.add(eventIdOf(r))
    const { key, data } = r.json as Delivered
    if (key === undefined) continue
    const before = latest.get(key)
    if (before !== undefined && (before.json as Delivered).data.i > data.i) {
      broken.push(`${describeEvent(r)} came after ${describeEvent(before)}`)
    } else latest.set(key, r)
  }
  return broken
}

/**
 * Publishes a backlog for a broker process, ends the process with `end` once MID_WAY events
 * were delivered, starts a new one on the same NATS and data directory and waits until every
 * event arrived — what the ended process had pulled may take the ack wait to come back.
 */
const deliverAcross = (options: {
  readonly databaseUrl?: string
  readonly end: (broker: BrokerProcess) => Effect.Effect<ProcessExit, unknown>
  readonly expectedExit: ProcessExit
}) =>
  Effect.gen(function* () {
    const nats = yield* tempNatsServer
    // Slow enough that the backlog is still draining when the broker is ended.
    const receiver = yield* scopedReceiver(() => ({ delayMs: 10 }))
    const broker = yield* startBrokerProcess({ natsUrl: nats.url, databaseUrl: options.databaseUrl })
    yield* broker.client.destinations.create({
      payload: { id: "sink", url: `${receiver.url}/hooks`, subscriptions: [">"] }
    })
    const sluice = yield* producer(nats.url)

    // The producer talks to NATS, not to the broker: it keeps publishing while the broker ends.
    const publishing = yield* Effect.fork(sluice.publishMany(inputs))
    yield* Effect.promise(() => receiver.waitForCount(MID_WAY, 20_000))
    const exit = yield* options.end(broker)
    const beforeEnd = receiver.received().length
    expect(exit).toEqual(options.expectedExit)
    expect(beforeEnd).toBeLessThan(EVENTS)
    const ids = (yield* Fiber.join(publishing)).map((result) => result.id)
    const published = new Set(ids)
    expect(published.size).toBe(EVENTS)

    yield* broker.restart
    const readyAt = Date.now()
    const missing = () => {
      const seen = new Set(receiver.received().map(eventIdOf))
      return ids.flatMap((id, i) => (seen.has(id) ? [] : [`#${i}${inputs[i]!.key === undefined ? "" : ` (${inputs[i]!.key})`}`]))
    }
    yield* waitForEffect(Effect.sync(() => missing().length === 0), {
      description: () => `all ${EVENTS} events at the receiver; ${missing().length} missing: ${missing().slice(0, 20).join(", ")}`,
      timeoutMs: ACK_WAIT_MS + 15_000
    })

    const requests = receiver.received()
    // Every request, a repeat included, carries its event's id as webhook-id.
    expect(requests.filter((r) => r.headers["webhook-id"] !== eventIdOf(r))).toEqual([])
    expect(new Set(requests.map(eventIdOf))).toEqual(published)
    expect(outOfOrder(requests)).toEqual([])
    return { requests, beforeEnd, readyAt }
  })

describe("a broker process ended mid-delivery", () => {
  // Postgres here, PGlite below: the crash test waits out the ack wait, so it gets the quicker start.
  it.scopedLive(
    "killed with SIGKILL (Postgres history): a new process delivers every event; only deliveries cut by the crash repeat",
    () =>
      Effect.gen(function* () {
        const databaseUrl = yield* throwawayDatabase
        const { requests, beforeEnd } = yield* deliverAcross({
          databaseUrl,
          end: (broker) => broker.kill,
          expectedExit: { code: null, signal: "SIGKILL" }
        })
        expect(repeated(requests).filter((repeat) => repeat.first > beforeEnd)).toEqual([])
      }),
    150_000
  )

  it.scopedLive(
    "stopped with SIGTERM (PGlite history): exits 0; a new process goes on at once, delivers every event and none twice",
    () =>
      Effect.gen(function* () {
        const { requests, readyAt } = yield* deliverAcross({
          end: (broker) => broker.stop("SIGTERM", 10_000),
          expectedExit: { code: 0, signal: null }
        })
        // A clean stop finishes what is in flight and releases the rest to the next process at
        // once; nothing is sent twice. An event that waited out the ack wait instead shows as a
        // pause in deliveries while events are still missing, or — also when a loaded machine
        // drains slowly enough to hide the pause — as a first attempt numbered 3 or more: the
        // receiver always answers 200, so its extra JetStream delivery went to a pull nobody read.
        const firsts = new Map<string, ReceivedRequest>()
        for (const r of requests) if (!firsts.has(eventIdOf(r))) firsts.set(eventIdOf(r), r)
        const detoured = [...firsts.values()]
          .filter((r) => Number(r.headers["sluice-attempt"]) > 2)
          .map((r) => `${describeEvent(r)} first sent as attempt ${String(r.headers["sluice-attempt"])}`)
        const stalls: Array<string> = []
        let previous = readyAt
        for (const r of [...firsts.values()].filter((r) => r.at > readyAt)) {
          if (r.at - previous > STALL_MS) stalls.push(`no new event for ${((r.at - previous) / 1000).toFixed(1)} s before ${describeEvent(r)}`)
          previous = r.at
        }
        expect({ stalls, detoured, repeats: repeated(requests) }).toEqual({ stalls: [], detoured: [], repeats: [] })
      }),
    150_000
  )
})
