/**
 * Rate limits, isolation between destinations and actor supervision, against a real
 * nats-server, Postgres and HTTP receivers.
 */
import { expect, layer } from "@effect/vitest"
import { Subjects } from "@sluice/protocol"
import { Effect } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { query, withJsm } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"
import { maxInWindow } from "../helpers/windows.js"

/** Request start times the broker recorded for a destination's attempts, with their events. */
const attemptStarts = (databaseUrl: string, destinationId: string) =>
  query(databaseUrl, (sql) =>
    sql<Array<{ event_id: string; started_at: Date }>>`
      select event_id, started_at from attempts where destination_id = ${destinationId}`
  ).pipe(Effect.map((rows) => rows.map((r) => ({ eventId: r.event_id, at: r.started_at.getTime() }))))

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("destination engine", (it) => {
  const setup = brokerOnFixture

  it.scoped("8 requests per second to a receiver taking 1 s each: never more than 8 start in any second; a PATCH applies live", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* setup
      const receiver = yield* scopedReceiver(() => ({ status: 200, delayMs: 1_000 }))
      yield* client.destinations.create({
        payload: {
          id: "slow-api",
          url: receiver.url,
          subscriptions: [">"],
          ordering: "none",
          maxConcurrency: 20,
          rateLimit: { perSecond: 8, burst: 8 }
        }
      })
      yield* sluice.publishMany(Array.from({ length: 32 }, (_, i) => ({ type: "call.made", data: { i } })))
      yield* Effect.promise(() => receiver.waitForCount(32, 30_000))
      const starts = yield* waitForEffect(
        attemptStarts(databaseUrl, "slow-api").pipe(Effect.map((s) => (s.length === 32 ? s : undefined))),
        { description: "32 attempts recorded" }
      )
      expect(maxInWindow(starts.map((s) => s.at))).toBeLessThanOrEqual(8)
      // What the receiver saw is what was recorded: each request is signed with its recorded
      // start (arrival times would measure this test process's event loop as much as the broker).
      const startOf = new Map(starts.map((s) => [s.eventId, s.at]))
      const signed = receiver.received().map((r) => ({
        signed: Number(r.headers["webhook-timestamp"]),
        recorded: Math.floor(startOf.get(String(r.headers["webhook-id"]))! / 1_000)
      }))
      expect(signed.filter((s) => s.signed !== s.recorded)).toEqual([])

      yield* client.destinations.update({ path: { id: "slow-api" }, payload: { rateLimit: { perSecond: 20, burst: 20 } } })
      const since = Date.now()
      yield* sluice.publishMany(Array.from({ length: 40 }, (_, i) => ({ type: "call.made", data: { i: 100 + i } })))
      yield* Effect.promise(() => receiver.waitForCount(72, 30_000))
      const later = yield* waitForEffect(
        attemptStarts(databaseUrl, "slow-api").pipe(Effect.map((s) => (s.length === 72 ? s : undefined))),
        { description: "72 attempts recorded" }
      )
      const after = later.map((s) => s.at).filter((t) => t >= since)
      expect(maxInWindow(after)).toBeGreaterThan(8)
      expect(maxInWindow(after)).toBeLessThanOrEqual(20)
    })
  )

  it.scoped("a hanging, a failing and an unreachable destination do not hold up a healthy one", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* setup
      const healthy = yield* scopedReceiver()
      const hanging = yield* scopedReceiver(() => ({ hang: true }))
      const failing = yield* scopedReceiver(() => ({ status: 500 }))
      const quick = { initialMs: 100, factor: 2, maxMs: 1_000, jitter: 0.2 }
      yield* client.destinations.create({ payload: { id: "healthy", url: healthy.url, subscriptions: [">"] } })
      yield* client.destinations.create({
        payload: { id: "hanging", url: hanging.url, subscriptions: [">"], timeoutMs: 2_000, retry: quick }
      })
      yield* client.destinations.create({ payload: { id: "failing", url: failing.url, subscriptions: [">"], retry: quick } })
      yield* client.destinations.create({
        payload: { id: "unreachable", url: "http://127.0.0.1:9/hooks", subscriptions: [">"], retry: quick }
      })
      const events = Array.from({ length: 300 }, (_, i) => ({ type: "tick.happened", key: `k${i % 30}`, data: { i } }))
      const published = yield* sluice.publishMany(events)
      yield* Effect.promise(() => healthy.waitForCount(300, 30_000))
      expect(new Set(healthy.received().map((r) => String(r.headers["webhook-id"])))).toEqual(
        new Set(published.map((p) => p.id))
      )
      for (const id of ["failing", "unreachable"]) {
        yield* waitForEffect(
          client.destinations.get({ path: { id } }).pipe(Effect.map((d) => d.health.state === "down")),
          { description: `${id} is down` }
        )
      }
      // The hanging receiver never held more requests than its destination's concurrency.
      expect(hanging.maxInFlight()).toBeLessThanOrEqual(10)
    })
  )

  it.scoped("an actor whose consumer vanishes is restarted alone, and the restart is recorded", () =>
    Effect.gen(function* () {
      const { client, sluice, natsUrl, databaseUrl } = yield* setup
      const a = yield* scopedReceiver()
      const b = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "a", url: a.url, subscriptions: [">"] } })
      yield* client.destinations.create({ payload: { id: "b", url: b.url, subscriptions: [">"] } })
      yield* sluice.publish({ type: "x.y", data: {} })
      yield* Effect.promise(() => Promise.all([a.waitForCount(1), b.waitForCount(1)]))

      yield* withJsm(natsUrl, (jsm) => jsm.consumers.delete(Subjects.EVENTS_STREAM, Subjects.destinationConsumer("a")))
      yield* waitForEffect(
        query(
          databaseUrl,
          (sql) => sql`select details from audit_log where action = 'actor.restarted' and destination_id = 'a'`
        ).pipe(Effect.map((rows) => rows.length > 0)),
        { description: "the restart of actor a recorded", timeoutMs: 20_000 }
      )
      // The restarted actor has its consumer back; b never noticed.
      yield* waitForEffect(
        withJsm(natsUrl, (jsm) =>
          jsm.consumers.info(Subjects.EVENTS_STREAM, Subjects.destinationConsumer("a")).then(
            () => true,
            () => false
          )
        ),
        { description: "consumer dest_a recreated" }
      )
      yield* sluice.publish({ type: "x.y", data: {} })
      yield* Effect.promise(() => Promise.all([a.waitForCount(2), b.waitForCount(2)]))
      const audit = yield* query(
        databaseUrl,
        (sql) => sql`select destination_id from audit_log where action = 'actor.restarted'`
      )
      expect(audit.map((r) => r.destination_id)).not.toContain("b")
    })
  )
})
