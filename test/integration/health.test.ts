/**
 * The destination engine against real parts: a nats-server, Postgres, and HTTP receivers
 * scripted to fail, hang, throttle or vanish. Health moves through its states, nothing is
 * lost, order holds after recovery, and operators' pause/resume/enable take effect.
 */
import { expect, layer } from "@effect/vitest"
import type { States } from "@sluice/protocol"
import { Effect, Exit, Scope } from "effect"
import type { AdminClient } from "../helpers/broker.js"
import { brokerOnFixture, producer, startBroker } from "../helpers/broker.js"
import { consumerInfo, query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor, waitForEffect } from "../helpers/waitFor.js"

const fastRetry = { initialMs: 50, factor: 2, maxMs: 500, jitter: 0 }
const fastHealth = { failureThreshold: 3, successThreshold: 2, probeInitialMs: 100, probeMaxMs: 400 }

const healthOf = (client: AdminClient, id: string) =>
  client.destinations.get({ path: { id } }).pipe(Effect.map((d) => d.health))

const waitForHealth = (client: AdminClient, id: string, state: States.HealthState) =>
  waitForEffect(
    healthOf(client, id).pipe(Effect.map((h) => (h.state === state ? h : undefined))),
    { description: `destination ${id} is ${state}`, timeoutMs: 20_000 }
  )

const idsOf = (requests: ReadonlyArray<ReceivedRequest>) => requests.map((r) => String(r.headers["webhook-id"]))

/** Ids of requests answered 2xx, in arrival order (the receiver's script decides per request). */
const succeeded = (requests: ReadonlyArray<ReceivedRequest>, ok: ReadonlySet<number>) =>
  idsOf(requests.filter((r) => ok.has(r.n)))

/** Health transitions as stored in the history database. */
const transitions = (databaseUrl: string, destinationId: string) =>
  query(
    databaseUrl,
    (sql) =>
      sql<Array<{ from_state: string; to_state: string }>>`
        select from_state, to_state from health_transitions
        where destination_id = ${destinationId} order by at, id`
  ).pipe(Effect.map((rows) => rows.map((r) => `${r.from_state}→${r.to_state}`)))

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("destination health", (it) => {
  const setup = brokerOnFixture

  it.scoped("goes down after repeated failures, probes the oldest event, recovers, and delivers the backlog in order", () =>
    Effect.gen(function* () {
      const { client, sluice, natsUrl, databaseUrl } = yield* setup
      let failing = true
      const ok = new Set<number>()
      const receiver = yield* scopedReceiver((_request, n) => {
        if (failing) return { status: 500 }
        ok.add(n)
        return { status: 200 }
      })
      yield* client.destinations.create({
        payload: { id: "feed", url: receiver.url, subscriptions: ["post.*"], retry: fastRetry, health: fastHealth }
      })
      const published: Array<string> = []
      for (let i = 0; i < 5; i++) {
        published.push((yield* sluice.publish({ type: "post.updated", key: "p1", version: i + 1, data: { i } })).id)
      }
      const down = yield* waitForHealth(client, "feed", "down")
      expect(down.reason).toMatch(/3 consecutive failures/)

      // While down the actor only probes the oldest event; newer ones are taken in (so a newer
      // version could cancel an older one) but neither sent nor bounced back to JetStream.
      for (let i = 5; i < 10; i++) {
        published.push((yield* sluice.publish({ type: "post.updated", key: "p1", version: i + 1, data: { i } })).id)
      }
      const seen = receiver.received().length
      yield* Effect.promise(() => receiver.waitForCount(seen + 2))
      const info = yield* consumerInfo(natsUrl, "feed")
      expect(info.num_redelivered).toBe(0)
      expect(new Set(idsOf(receiver.received()))).toEqual(new Set([published[0]]))

      failing = false
      yield* waitForHealth(client, "feed", "active")
      yield* Effect.promise(() => waitFor(() => ok.size >= 10, { description: "all ten delivered" }))
      expect(succeeded(receiver.received(), ok)).toEqual(published)
      yield* waitForEffect(
        transitions(databaseUrl, "feed").pipe(Effect.map((t) => (t.length >= 3 ? t : undefined))),
        { description: "health transitions recorded" }
      ).pipe(Effect.tap((t) => expect(t).toEqual(["active→down", "down→recovering", "recovering→active"])))
    })
  )

  it.scoped("pause stops deliveries, events accumulate, resume delivers the backlog in order", () =>
    Effect.gen(function* () {
      const { client, sluice, natsUrl, databaseUrl } = yield* setup
      const receiver = yield* scopedReceiver(() => ({ status: 200, delayMs: 100 }))
      yield* client.destinations.create({ payload: { id: "sync", url: receiver.url, subscriptions: [">"] } })
      const published: Array<string> = []
      for (let i = 0; i < 10; i++) published.push((yield* sluice.publish({ type: "task.updated", key: "t1", data: { i } })).id)
      yield* Effect.promise(() => receiver.waitForCount(1))

      const paused = yield* client.destinations.pause({ path: { id: "sync" } })
      const pausedAt = Date.now()
      expect(paused.health).toMatchObject({ state: "paused", reason: "paused by admin" })
      // Within a second (the promise) the request in flight has finished and nothing new started;
      // after that nothing is sent and nothing new is pulled, while a witness destination on the
      // same events shows they were published and deliverable.
      yield* Effect.promise(() =>
        waitFor(() => receiver.inFlight() === 0 && Date.now() - pausedAt >= 1_000, {
          description: "a second after the pause, nothing in flight"
        })
      )
      const before = receiver.received().length
      expect(before).toBeLessThan(10)
      // The actor stops asking for more: its last pull request ends (within its 5 s expiry).
      yield* waitForEffect(consumerInfo(natsUrl, "sync").pipe(Effect.map((info) => info.num_waiting === 0)), {
        description: "no pull request open for the paused destination"
      })
      const witness = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "witness", url: witness.url, subscriptions: [">"] } })
      for (let i = 10; i < 15; i++) published.push((yield* sluice.publish({ type: "task.updated", key: "t1", data: { i } })).id)
      yield* Effect.promise(() => witness.waitForCount(5))
      expect(receiver.received().length).toBe(before)
      expect((yield* consumerInfo(natsUrl, "sync")).num_pending).toBeGreaterThanOrEqual(5)

      const resumed = yield* client.destinations.resume({ path: { id: "sync" } })
      expect(resumed.health.state).toBe("active")
      yield* Effect.promise(() => waitFor(() => new Set(idsOf(receiver.received())).size === 15, { description: "all 15 delivered" }))
      // Each event once, in publish order (a request cut short by the pause may be repeated in place).
      const firstSeen = [...new Set(idsOf(receiver.received()))]
      expect(firstSeen).toEqual(published)
      yield* waitForEffect(
        transitions(databaseUrl, "sync").pipe(Effect.map((t) => (t.length >= 2 ? t : undefined))),
        { description: "pause and resume recorded" }
      ).pipe(Effect.tap((t) => expect(t).toEqual(["active→paused", "paused→active"])))
    })
  )

  it.scoped("a paused destination stays paused across a broker restart", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      const first = yield* Scope.make()
      const broker = yield* startBroker({ natsUrl: nats.url, databaseUrl }).pipe(Scope.extend(first))
      yield* broker.client.destinations.create({ payload: { id: "hold", url: receiver.url, subscriptions: [">"] } })
      yield* broker.client.destinations.pause({ path: { id: "hold" } })
      yield* Scope.close(first, Exit.void)

      const published = yield* sluice.publish({ type: "x.happened", data: {} })
      const again = yield* startBroker({ natsUrl: nats.url, databaseUrl })
      expect((yield* healthOf(again.client, "hold")).state).toBe("paused")
      yield* waitForEffect(
        consumerInfo(nats.url, "hold").pipe(Effect.map((info) => info.num_pending === 1 && info.num_ack_pending === 0)),
        { description: "the event waits" }
      )
      expect(receiver.received()).toHaveLength(0)
      yield* again.client.destinations.resume({ path: { id: "hold" } })
      const [request] = yield* Effect.promise(() => receiver.waitForCount(1))
      expect(request!.headers["webhook-id"]).toBe(published.id)
    })
  )

  it.scoped("410 Gone disables the destination; events arriving while disabled are recorded; enable resumes", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* setup
      let gone = true
      const receiver = yield* scopedReceiver(() => ({ status: gone ? 410 : 200 }))
      yield* client.destinations.create({ payload: { id: "old", url: receiver.url, subscriptions: [">"] } })
      const first = yield* sluice.publish({ type: "a.b", data: {} })
      const disabled = yield* waitForHealth(client, "old", "disabled")
      expect(disabled.reason).toMatch(/410 Gone/)
      const whileDisabled = yield* sluice.publish({ type: "a.b", data: {} })
      for (const id of [first.id, whileDisabled.id]) {
        yield* waitForEffect(
          client.events.get({ path: { id } }).pipe(Effect.map((d) => d.deliveries[0]?.state === "disabled")),
          { description: `event ${id} recorded disabled` }
        )
      }
      expect(receiver.received()).toHaveLength(1)

      gone = false
      const enabled = yield* client.destinations.enable({ path: { id: "old" } })
      expect(enabled.health).toMatchObject({ state: "active", reason: "enabled by admin" })
      const after = yield* sluice.publish({ type: "a.b", data: {} })
      // Enabled again, it also learns what it lost: the two events recorded disabled.
      const requests = (yield* Effect.promise(() => receiver.waitForCount(3))).slice(1)
      const types = requests.map((r) => (r.json as { type: string }).type)
      expect(types.toSorted()).toEqual(["a.b", "sluice.sync_error"])
      expect(requests.find((r) => (r.json as { type: string }).type === "a.b")!.headers["webhook-id"]).toBe(after.id)
      expect((requests.find((r) => (r.json as { type: string }).type === "sluice.sync_error")!.json as { data: unknown }).data).toMatchObject(
        { dead: 0, disabled: 2, expired: 0 }
      )
    })
  )

  it.scoped("a destination down longer than its limit is disabled", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* setup
      const receiver = yield* scopedReceiver(() => ({ status: 503 }))
      yield* client.destinations.create({
        payload: {
          id: "dead-end",
          url: receiver.url,
          subscriptions: [">"],
          retry: fastRetry,
          health: { ...fastHealth, failureThreshold: 1, probeInitialMs: 60_000, disableAfterMs: 500 }
        }
      })
      yield* sluice.publish({ type: "a.b", data: {} })
      const disabled = yield* waitForHealth(client, "dead-end", "disabled")
      expect(disabled.reason).toBe("down for more than 500ms")
    })
  )

  it.scoped("429 with Retry-After is waited out without counting against the event; other 4xx are dead at once", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* setup
      const receiver = yield* scopedReceiver((request) => {
        const { data } = request.json as { data: { answer: string } }
        if (data.answer === "bad") return { status: 422, body: { error: "no such field" } }
        return request.n === 1 ? { status: 429, headers: { "retry-after": "1" } } : { status: 200 }
      })
      yield* client.destinations.create({
        payload: { id: "api", url: receiver.url, subscriptions: [">"], retry: { ...fastRetry, maxAttempts: 1 } }
      })
      const throttled = yield* sluice.publish({ type: "a.b", key: "k", data: { answer: "ok" } })
      const detail = yield* waitForEffect(
        client.events.get({ path: { id: throttled.id } }).pipe(
          Effect.map((d) => (d.deliveries[0]?.state === "completed" ? d : undefined))
        ),
        { description: "the throttled event completes" }
      )
      const log = detail.deliveries[0]!.attemptLog
      expect(log.map((a) => a.outcome)).toEqual(["throttled", "success"])
      expect(Date.parse(log[1]!.startedAt) - Date.parse(log[0]!.startedAt)).toBeGreaterThanOrEqual(900)

      const rejected = yield* sluice.publish({ type: "a.b", key: "k2", data: { answer: "bad" } })
      const dead = yield* waitForEffect(
        client.events.get({ path: { id: rejected.id } }).pipe(
          Effect.map((d) => (d.deliveries[0]?.state === "dead" ? d : undefined))
        ),
        { description: "the rejected event is dead" }
      )
      expect(dead.deliveries[0]!.attempts).toBe(1)
      expect(dead.deliveries[0]!.attemptLog[0]!.responseExcerpt).toContain("no such field")
      expect((yield* healthOf(client, "api")).state).toBe("active")
    })
  )
})
