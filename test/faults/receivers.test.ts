/**
 * Receivers that misbehave: one that never answers, one that resets the connection, one that
 * trickles a 2xx body slower than the timeout allows, one that answers with 50 MB, one whose
 * answers hold NUL bytes. Each over real sockets against a real broker; for each, every
 * published event ends `completed` at the receiver exactly once, and the repeats the receiver
 * sees are bounded: each one is an attempt the history records as failed (so repeats per event
 * = failed attempts, which the receiver's script fixes).
 */
import { expect, layer } from "@effect/vitest"
import { Context, Effect, Layer } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import type { Receiver } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

interface AttemptRow {
  readonly event_id: string
  readonly attempt: number
  readonly outcome: string
  readonly status_code: number | null
  readonly error: string | null
  readonly response_excerpt: string | null
  readonly duration_ms: number
}

const requestsByEvent = (receiver: Receiver): Map<string, number> => {
  const counts = new Map<string, number>()
  for (const r of receiver.received()) {
    const id = String(r.headers["webhook-id"])
    counts.set(id, (counts.get(id) ?? 0) + 1)
  }
  return counts
}

/**
 * Waits until every event is `completed` for the destination in the history and every request
 * the receiver saw is a recorded attempt; then checks that each event succeeded exactly once
 * and answers its attempts.
 */
const completedOnce = (databaseUrl: string, destinationId: string, receiver: Receiver, ids: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const read = query(databaseUrl, async (sql) => {
      const completed = await sql<Array<{ event_id: string }>>`
        select event_id from deliveries where destination_id = ${destinationId} and state = 'completed'`
      const attempts = await sql<Array<AttemptRow>>`
        select event_id, attempt, outcome, status_code, error, response_excerpt, duration_ms
        from attempts where destination_id = ${destinationId} order by event_id, attempt`
      return { completed: new Set(completed.map((row) => row.event_id)), attempts }
    })
    const describe = () => `${ids.length} events of ${destinationId} completed, each request recorded as an attempt`
    const history = yield* waitForEffect(
      read.pipe(
        Effect.map((h) => ids.every((id) => h.completed.has(id)) && h.attempts.length === receiver.received().length && h)
      ),
      { description: describe, timeoutMs: 45_000 }
    )
    const requests = requestsByEvent(receiver)
    const perEvent = ids.map((id) => {
      const mine = history.attempts.filter((a) => a.event_id === id)
      return { id, requests: requests.get(id) ?? 0, attempts: mine.length, successes: mine.filter((a) => a.outcome === "success").length }
    })
    // Nothing lost, nothing completed twice; every repeat at the receiver is a recorded failed attempt.
    expect(perEvent.filter((e) => e.successes !== 1 || e.requests !== e.attempts)).toEqual([])
    return history.attempts
  })

/** `n` events of `type`, half of them on keys (ordered lanes), half unordered. */
const events = (type: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({ type, ...(i % 2 === 0 ? { key: `${type}-k${i % 3}` } : {}), data: { i } }))

/**
 * One broker for the file (each test its own destinations, event types and receivers): a
 * broker with running actors takes seconds to stop, as its open pulls expire.
 */
class Broker extends Context.Tag("test/faults/receivers/Broker")<Broker, Effect.Effect.Success<typeof brokerOnFixture>>() {}
const fixture = Layer.scoped(Broker, brokerOnFixture).pipe(Layer.provideMerge(NatsFixture.layer))

/** Settings that keep a misbehaving receiver from taking its destination down: these tests are about attempts. */
const patient = { retry: { initialMs: 50, maxMs: 200, jitter: 0 }, health: { failureThreshold: 1_000 } }

layer(fixture, { timeout: 120_000, excludeTestServices: true })("misbehaving receivers", (it) => {
  it.scoped("a receiver that never answers: each attempt ends at timeoutMs and is retried; another destination is not slowed", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* Broker
      let hold = true
      const hanging = yield* scopedReceiver(() => (hold ? { hang: true } : {}))
      const steady = yield* scopedReceiver()
      yield* client.destinations.create({
        payload: { id: "hang-slow", url: hanging.url, subscriptions: ["hang.>"], timeoutMs: 1_000, ...patient }
      })
      yield* client.destinations.create({ payload: { id: "hang-steady", url: steady.url, subscriptions: ["hang.>"] } })
      const ids = (yield* sluice.publishMany(events("hang.tick", 20))).map((p) => p.id)

      // The steady destination gets everything while the other's requests hang, time out and go again.
      yield* waitForEffect(
        Effect.sync(() => {
          const retried = [...requestsByEvent(hanging).values()].some((n) => n >= 2)
          return retried && ids.every((id) => requestsByEvent(steady).has(id))
        }),
        {
          description: () =>
            `all 20 at the steady receiver (${steady.received().length}) while a hung attempt was retried (${hanging.received().length} hung requests)`,
          timeoutMs: 30_000
        }
      )
      expect(hanging.received().length).toBeGreaterThan(0)
      hold = false

      yield* completedOnce(databaseUrl, "hang-steady", steady, ids)
      const attempts = yield* completedOnce(databaseUrl, "hang-slow", hanging, ids)
      const timedOut = attempts.filter((a) => a.outcome === "failure")
      expect(timedOut.length).toBeGreaterThan(0)
      for (const a of timedOut) {
        expect(a.error).toBe("timeout after 1000 ms")
        expect(a.duration_ms).toBeGreaterThanOrEqual(1_000)
      }
    })
  )

  it.scoped("a receiver that resets the connection mid-request: recorded as a failure and retried until it answers", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* Broker
      // Each event's first two requests are cut off after the receiver read them.
      const seen = new Map<string, number>()
      const receiver = yield* scopedReceiver((request) => {
        const id = String(request.headers["webhook-id"])
        seen.set(id, (seen.get(id) ?? 0) + 1)
        return seen.get(id)! <= 2 ? { destroy: true } : {}
      })
      yield* client.destinations.create({ payload: { id: "reset-sink", url: receiver.url, subscriptions: ["reset.>"], ...patient } })
      const ids = (yield* sluice.publishMany(events("reset.tick", 20))).map((p) => p.id)

      const attempts = yield* completedOnce(databaseUrl, "reset-sink", receiver, ids)
      // Exactly the two resets per event repeat it.
      expect([...requestsByEvent(receiver).values()].every((n) => n === 3)).toBe(true)
      const failed = attempts.filter((a) => a.outcome === "failure")
      expect(failed).toHaveLength(2 * ids.length)
      expect(failed.filter((a) => !/^connection reset/.test(a.error ?? ""))).toEqual([])
    })
  )

  it.scoped("a receiver that trickles a 200 byte by byte past the timeout: the attempt is cut at timeoutMs, failed and retried", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* Broker
      const trickles: Array<{ writes: number; completed: boolean }> = []
      const seen = new Map<string, number>()
      // 40 bytes, one every 100 ms: 4 s for a body the destination waits 1 s for.
      const receiver = yield* scopedReceiver((request) => {
        const id = String(request.headers["webhook-id"])
        seen.set(id, (seen.get(id) ?? 0) + 1)
        return seen.get(id)! <= 2
          ? { stream: { chunk: "x", writes: 40, intervalMs: 100, onEnd: (outcome) => trickles.push(outcome) } }
          : { body: "ok" }
      })
      yield* client.destinations.create({
        payload: { id: "trickle-sink", url: receiver.url, subscriptions: ["trickle.>"], timeoutMs: 1_000, ...patient }
      })
      const ids = (yield* sluice.publishMany(events("trickle.tick", 4))).map((p) => p.id)

      const attempts = yield* completedOnce(databaseUrl, "trickle-sink", receiver, ids)
      const cut = attempts.filter((a) => a.outcome === "failure")
      expect(cut).toHaveLength(2 * ids.length)
      // The status line said 200; the body never finished in time, so the attempt failed.
      expect(cut.filter((a) => a.status_code !== 200 || a.error !== "timeout after 1000 ms")).toEqual([])
      // The broker hung up on every trickle before its end.
      yield* waitForEffect(Effect.sync(() => trickles.length === 2 * ids.length), { description: "every trickle ended" })
      expect(trickles.filter((t) => t.completed || t.writes >= 40)).toEqual([])
    })
  )

  it.scoped("a receiver that answers 200 with 50 MB: the broker reads a capped prefix, hangs up, and the event is delivered once", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* Broker
      const chunk = Buffer.alloc(64 * 1024, "a")
      const WRITES = 800 // 50 MiB
      const answers: Array<{ writes: number; completed: boolean }> = []
      const receiver = yield* scopedReceiver(() => ({
        stream: { chunk, writes: WRITES, intervalMs: 0, onEnd: (outcome) => answers.push(outcome) }
      }))
      yield* client.destinations.create({ payload: { id: "huge-sink", url: receiver.url, subscriptions: ["huge.>"] } })
      const ids = (yield* sluice.publishMany(events("huge.tick", 4))).map((p) => p.id)

      const attempts = yield* completedOnce(databaseUrl, "huge-sink", receiver, ids)
      // One attempt each: a big answer is still a 2xx.
      expect(attempts.map((a) => a.outcome)).toEqual(ids.map(() => "success"))
      // The history keeps an excerpt (HttpSender.maxExcerptBytes), not the body.
      expect(attempts.filter((a) => (a.response_excerpt?.length ?? 0) > 1_024)).toEqual([])
      // The broker stopped reading and closed the connection long before 50 MB went out.
      yield* waitForEffect(Effect.sync(() => answers.length === ids.length), { description: "every huge answer ended" })
      expect(answers.filter((a) => a.completed || a.writes >= WRITES)).toEqual([])
    })
  )

  it.scoped("a receiver whose answers hold NUL bytes: the excerpts are stored and the history does not stop", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* Broker
      const seen = new Set<string>()
      // Postgres refuses NUL in text: stored as is, one such excerpt would fail every later batch of facts.
      const receiver = yield* scopedReceiver((request) => {
        const id = String(request.headers["webhook-id"])
        const first = !seen.has(id)
        seen.add(id)
        return first ? { status: 500, body: "bad\u0000answer" } : { body: "ok\u0000" }
      })
      yield* client.destinations.create({ payload: { id: "nul-sink", url: receiver.url, subscriptions: ["nul.>"], ...patient } })
      const ids = (yield* sluice.publishMany(events("nul.tick", 6))).map((p) => p.id)

      const attempts = yield* completedOnce(databaseUrl, "nul-sink", receiver, ids)
      expect(attempts.map((a) => a.response_excerpt).sort()).toEqual([
        ...ids.map(() => "bad\uFFFDanswer"),
        ...ids.map(() => "ok\uFFFD")
      ].sort())
    })
  )
})
