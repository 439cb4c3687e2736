/**
 * Per-key order, superseding, duplicates and idempotency against real parts: the delivery
 * states `canceled`, `ignored` and `duplicate` with the references that explain them.
 */
import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { AdminClient } from "../helpers/broker.js"
import { brokerOnFixture, producer, restartableBroker, startBroker } from "../helpers/broker.js"
import { withJsm } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor, waitForEffect } from "../helpers/waitFor.js"

const fastRetry = { initialMs: 50, factor: 2, maxMs: 300, jitter: 0 }

const delivery = (client: AdminClient, eventId: string, state: string) =>
  waitForEffect(
    client.events.get({ path: { id: eventId } }).pipe(
      Effect.map((d) => (d.deliveries[0]?.state === state ? d.deliveries[0] : undefined))
    ),
    { description: `event ${eventId} is ${state}` }
  )

const dataOf = (r: ReceivedRequest) => (r.json as { data: { i: number } }).data.i

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("ordering and superseding", (it) => {
  it.scoped("post.deleted published while post.created retries against a down destination: only post.deleted arrives", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      let down = true
      const accepted: Array<string> = []
      const receiver = yield* scopedReceiver((request) => {
        if (down) return { status: 503 }
        accepted.push((request.json as { type: string }).type)
        return { status: 200 }
      })
      yield* client.destinations.create({
        payload: {
          id: "feed",
          url: receiver.url,
          subscriptions: ["post.*"],
          retry: fastRetry,
          health: { failureThreshold: 2, successThreshold: 1, probeInitialMs: 100, probeMaxMs: 300 }
        }
      })
      const created = yield* sluice.publish({ type: "post.created", key: "p1", version: 1, data: { title: "hi" } })
      yield* waitForEffect(
        client.destinations.get({ path: { id: "feed" } }).pipe(Effect.map((d) => d.health.state === "down")),
        { description: "feed is down" }
      )
      const deleted = yield* sluice.publish({
        type: "post.deleted",
        key: "p1",
        version: 2,
        supersedes: true,
        data: {}
      })
      const canceled = yield* delivery(client, created.id, "canceled")
      expect(canceled.canceledBy).toBe(deleted.id)
      down = false
      yield* delivery(client, deleted.id, "completed")
      expect(accepted).toEqual(["post.deleted"])
    })
  )

  it.scoped("an event superseded while its request is on the wire is canceled when that attempt fails", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      let release: () => void = () => {}
      const held = new Promise<void>((resolve) => (release = resolve))
      const accepted: Array<string> = []
      const receiver = yield* scopedReceiver(async (request, n) => {
        const type = (request.json as { type: string }).type
        if (n === 1) {
          await held
          return { status: 503 }
        }
        accepted.push(type)
        return { status: 200 }
      })
      yield* client.destinations.create({
        payload: { id: "feed-wire", url: receiver.url, subscriptions: ["post.*"], retry: fastRetry }
      })
      const created = yield* sluice.publish({ type: "post.created", key: "p1", version: 1, data: {} })
      yield* Effect.promise(() =>
        waitFor(() => receiver.inFlight() === 1, { description: "post.created on the wire", timeoutMs: 30_000 })
      )
      const deleted = yield* sluice.publish({ type: "post.deleted", key: "p1", version: 2, supersedes: true, data: {} })
      release()
      expect((yield* delivery(client, created.id, "canceled")).canceledBy).toBe(deleted.id)
      yield* delivery(client, deleted.id, "completed")
      expect(accepted).toEqual(["post.deleted"])
    })
  )

  it.scoped("an older version after a newer one was delivered is ignored; the same version again is a duplicate", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "sync", url: receiver.url, subscriptions: [">"] } })
      const v2 = yield* sluice.publish({ type: "task.updated", key: "t1", version: 2, data: {} })
      yield* delivery(client, v2.id, "completed")
      const v1 = yield* sluice.publish({ type: "task.updated", key: "t1", version: 1, data: {} })
      const again = yield* sluice.publish({ type: "task.updated", key: "t1", version: 2, data: {} })
      const ignored = yield* delivery(client, v1.id, "ignored")
      expect(ignored.ignoredReason).toBe(`version 1 is older than version 2 already delivered (event ${v2.id})`)
      const duplicate = yield* delivery(client, again.id, "duplicate")
      expect(duplicate.duplicateOf).toBe(v2.id)
      expect(receiver.received()).toHaveLength(1)
    })
  )

  it.scoped("the delivered version survives a broker restart", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      const { broker, restart } = yield* restartableBroker({ natsUrl: nats.url, databaseUrl })
      yield* broker.client.destinations.create({ payload: { id: "sync-restart", url: receiver.url, subscriptions: [">"] } })
      const v5 = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 5, data: {} })
      yield* delivery(broker.client, v5.id, "completed")

      const again = yield* restart
      const stale = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 4, data: {} })
      yield* delivery(again.client, stale.id, "ignored")
      expect(receiver.received()).toHaveLength(1)
    })
  )

  it.scoped("a destination removed and created again under its id forgets the versions it delivered", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      const create = client.destinations.create({ payload: { id: "reborn", url: receiver.url, subscriptions: [">"] } })
      yield* create
      const first = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 3, data: {} })
      yield* delivery(client, first.id, "completed")
      yield* client.destinations.remove({ path: { id: "reborn" } })
      yield* create
      const again = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 3, data: {} })
      yield* delivery(client, again.id, "completed")
      expect(receiver.received()).toHaveLength(2)
    })
  )

  it.scoped("a latestOnly destination cancels queued older versions without being asked", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      let open: () => void = () => {}
      const gate = new Promise<void>((resolve) => (open = resolve))
      const receiver = yield* scopedReceiver(async (_request, n) => {
        if (n === 1) await gate
        return { status: 200 }
      })
      yield* client.destinations.create({
        payload: { id: "state", url: receiver.url, subscriptions: [">"], latestOnly: true }
      })
      // v1 is in flight and held at the receiver; v2..v5 queue behind it, each superseding the one before.
      const v1 = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 1, data: { i: 1 } })
      yield* Effect.promise(() => waitFor(() => receiver.inFlight() === 1, { description: "v1 in flight" }))
      const middle = yield* sluice.publishMany(
        [2, 3, 4].map((version) => ({ type: "doc.saved", key: "d1", version, data: { i: version } }))
      )
      const v5 = yield* sluice.publish({ type: "doc.saved", key: "d1", version: 5, data: { i: 5 } })
      // Each newer version cancels the queued one before it.
      const successors = [...middle.slice(1), v5]
      for (const [i, m] of middle.entries()) {
        expect((yield* delivery(client, m.id, "canceled")).canceledBy).toBe(successors[i]!.id)
      }
      open()
      yield* delivery(client, v5.id, "completed")
      yield* delivery(client, v1.id, "completed")
      expect(receiver.received().map(dataOf)).toEqual([1, 5])
    })
  )

  it.scoped("a key stuck retrying does not stall other keys; thousands can wait behind it", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver((request) => ({
        status: (request.json as { key: string }).key === "stuck" ? 500 : 200
      }))
      yield* client.destinations.create({
        payload: {
          id: "mixed",
          url: receiver.url,
          subscriptions: [">"],
          retry: { ...fastRetry, maxMs: 1_000, maxAttempts: 1_000 },
          health: { failureThreshold: 1_000 }
        }
      })
      yield* sluice.publishMany(
        Array.from({ length: 2_000 }, (_, i) => ({ type: "item.changed", key: "stuck", data: { i } }))
      )
      const others = yield* sluice.publishMany(
        Array.from({ length: 300 }, (_, i) => ({ type: "item.changed", key: `k${i % 50}`, data: { i } }))
      )
      const ids = new Set(others.map((o) => o.id))
      yield* Effect.promise(() =>
        waitFor(
          () => receiver.received().filter((r) => ids.has(String(r.headers["webhook-id"])) && r.n > 0).length >= 300,
          { description: "all 300 events of other keys delivered", timeoutMs: 30_000 }
        )
      )
      // Only the head of the stuck key was ever tried: the rest wait their turn.
      const stuck = receiver.received().filter((r) => (r.json as { key: string }).key === "stuck")
      expect(new Set(stuck.map(dataOf))).toEqual(new Set([0]))
    })
  )

  it.scoped("events of one key arrive in publish order across a broker restart", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver(() => ({ status: 200, delayMs: 5 }))
      const { broker, restart } = yield* restartableBroker({ natsUrl: nats.url, databaseUrl })
      yield* broker.client.destinations.create({ payload: { id: "ordered", url: receiver.url, subscriptions: [">"] } })
      const events = Array.from({ length: 400 }, (_, i) => ({ type: "row.changed", key: `r${i % 8}`, data: { i } }))
      yield* sluice.publishMany(events)
      yield* Effect.promise(() => receiver.waitForCount(100, 30_000))
      yield* restart
      yield* Effect.promise(() =>
        waitFor(() => new Set(receiver.received().map(dataOf)).size === 400, {
          description: () => `all 400 delivered (have ${new Set(receiver.received().map(dataOf)).size}, ${receiver.received().length} requests)`,
          // The old broker waits out its open pull (up to 5 s) before the new one starts.
          timeoutMs: 60_000
        })
      )
      for (let k = 0; k < 8; k++) {
        const firstSeen = [...new Set(receiver.received().filter((r) => (r.json as { key: string }).key === `r${k}`).map(dataOf))]
        expect(firstSeen).toEqual(firstSeen.toSorted((a, b) => a - b))
      }
    })
  )

  it.scoped("a backlog of many keys keeps each key's order through repeated down and recovering cycles", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const keys = 15
      const total = 1_500
      // Every 100th request starts a run of 15 failures: the destination goes down, is probed
      // back to recovering and active, again and again, while the backlog drains through a
      // small window of held events.
      const accepted = Array.from({ length: keys }, () => [] as Array<number>)
      const receiver = yield* scopedReceiver((request, n) => {
        if (n % 100 >= 50 && n % 100 < 65) return { status: 503 }
        const { key, data } = request.json as { key: string; data: { i: number } }
        accepted[Number(key.slice(1))]!.push(data.i)
        return { status: 200 }
      })
      yield* client.destinations.create({
        payload: {
          id: "flapping",
          url: receiver.url,
          subscriptions: [">"],
          // Far less than the backlog: the actor keeps pulling while its mode changes.
          maxQueued: 64,
          retry: fastRetry,
          health: { failureThreshold: 3, successThreshold: 2, probeInitialMs: 20, probeMaxMs: 50 }
        }
      })
      yield* sluice.publishMany(
        Array.from({ length: total }, (_, i) => ({ type: "row.changed", key: `k${i % keys}`, data: { i } }))
      )
      const delivered = () => new Set(accepted.flat()).size
      yield* Effect.promise(() =>
        waitFor(() => delivered() === total, {
          description: () => `all ${total} delivered (have ${delivered()}, ${receiver.received().length} requests)`,
          timeoutMs: 120_000
        })
      )
      for (const sequence of accepted) {
        // A request cut short may be repeated in place; nothing may arrive after a later event of its key.
        const collapsed = sequence.filter((i, at) => at === 0 || sequence[at - 1] !== i)
        expect(collapsed).toEqual(collapsed.toSorted((a, b) => a - b))
        expect(new Set(collapsed).size).toBe(collapsed.length)
      }
    }),
    { timeout: 180_000 }
  )

  it.scoped("property: interleaved keys under random receiver failures arrive in per-key order, for many seeds", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const seeds = [1, 2, 3, 4, 5, 6, 7, 8]
      const perSeed = 150
      const runs = yield* Effect.forEach(seeds, (seed) =>
        Effect.gen(function* () {
          const random = mulberry32(seed)
          const keys = 2 + Math.floor(random() * 6)
          const failureRate = 0.1 + random() * 0.3
          const accepted = new Map<string, Array<number>>()
          const receiver = yield* scopedReceiver((request) => {
            if (random() < failureRate) return { status: random() < 0.8 ? 500 : 503 }
            const events = request.method === "PUT" ? (request.json as { events: Array<unknown> }).events : [request.json]
            for (const event of events as Array<{ key: string; data: { i: number } }>) {
              accepted.set(event.key, [...(accepted.get(event.key) ?? []), event.data.i])
            }
            return { status: 200 }
          })
          yield* client.destinations.create({
            payload: {
              id: `seed-${seed}`,
              url: receiver.url,
              subscriptions: [`seed${seed}.>`],
              maxConcurrency: 1 + Math.floor(random() * 8),
              retry: { initialMs: 10, factor: 2, maxMs: 100, jitter: 0.5 },
              health: { failureThreshold: 4, successThreshold: 2, probeInitialMs: 20, probeMaxMs: 100 },
              // Every other seed delivers in transactions: order must hold inside and across them.
              batch: seed % 2 === 0 ? { maxEvents: 1 + Math.floor(random() * 10), maxWaitMs: 20 } : null
            }
          })
          const events = Array.from({ length: perSeed }, (_, i) => ({
            type: `seed${seed}.changed`,
            key: `k${Math.floor(random() * keys)}`,
            data: { i }
          }))
          return { seed, events, accepted }
        })
      )
      // Published interleaved across seeds, in chunks, while deliveries and failures are under way.
      for (let i = 0; i < perSeed; i += 25) {
        yield* sluice.publishMany(runs.flatMap((run) => run.events.slice(i, i + 25)))
      }
      const delivered = (run: (typeof runs)[number]) => new Set([...run.accepted.values()].flat()).size
      yield* Effect.promise(() =>
        waitFor(() => runs.every((run) => delivered(run) === perSeed), {
          description: () => `every seed delivered (${runs.map((run) => `${run.seed}: ${delivered(run)}`).join(", ")})`,
          timeoutMs: 120_000
        })
      )
      for (const run of runs) {
        for (const [key, sequence] of run.accepted) {
          // A request cut short may be repeated in place; nothing arrives after a later event of its key.
          const collapsed = sequence.filter((i, at) => at === 0 || sequence[at - 1] !== i)
          const expected = run.events.flatMap((e, i) => (e.key === key ? [i] : []))
          expect({ seed: run.seed, key, order: collapsed }).toEqual({ seed: run.seed, key, order: expected })
        }
      }
    }),
    { timeout: 180_000 }
  )

  it.scoped("an idempotency key reused after JetStream's duplicate window still yields one delivery", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const { client } = yield* startBroker({
        natsUrl: nats.url,
        databaseUrl,
        settings: { duplicateWindow: Duration.millis(200) }
      })
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "pay", url: receiver.url, subscriptions: ["payment.*"] } })
      const first = yield* sluice.publish({ type: "payment.captured", idempotencyKey: "charge-42", data: {} })
      yield* delivery(client, first.id, "completed")
      // Wait until JetStream's window has passed: a marker message id, published after, is accepted a second time.
      const marker = (jsm: Parameters<Parameters<typeof withJsm>[1]>[0]) =>
        jsm.jetstream().publish("sluice.events.window.marker", "{}", { msgID: "window-marker" })
      yield* withJsm(nats.url, marker)
      yield* waitForEffect(
        withJsm(nats.url, async (jsm) => !(await marker(jsm)).duplicate),
        { description: "JetStream's duplicate window passed" }
      )
      const retry = yield* sluice.publish({ type: "payment.captured", idempotencyKey: "charge-42", data: {} })
      expect(retry.duplicate).toBe(false)
      expect(retry.id).not.toBe(first.id)
      const duplicate = yield* delivery(client, retry.id, "duplicate")
      expect(duplicate.duplicateOf).toBe(first.id)
      const stored = yield* waitForEffect(
        client.events.get({ path: { id: retry.id } }).pipe(
          Effect.map((d) => (d.event.duplicateOf !== null ? d.event : undefined))
        ),
        { description: "history marks the repeat" }
      )
      expect(stored.duplicateOf).toBe(first.id)
      expect(receiver.received()).toHaveLength(1)
    })
  )
})

/** A small seeded PRNG, so a failing seed can be replayed. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
