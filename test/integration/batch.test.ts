/**
 * Batched destinations (like Matrix application services): events travel in transactions,
 * `PUT <url>/transactions/<txnId>` with an `events` array; ids increase per destination, a
 * failed transaction is retried with the same id and events, and ordering and superseding
 * hold inside and across transactions.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { brokerOnFixture, producer, restartableBroker } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor } from "../helpers/waitFor.js"

const fastRetry = { initialMs: 50, factor: 2, maxMs: 300, jitter: 0 }

interface Transaction {
  readonly txnId: number
  readonly events: ReadonlyArray<{ readonly id: string; readonly type: string; readonly key?: string; readonly data: { i: number } }>
}

const transactionOf = (r: ReceivedRequest) => r.json as Transaction

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("batched destinations", (it) => {
  it.scoped("events arrive as transactions with increasing ids, each event once and each key in order", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({
        payload: {
          id: "matrix",
          url: `${receiver.url}/_matrix/app/v1`,
          subscriptions: [">"],
          batch: { maxEvents: 10, maxWaitMs: 100 }
        }
      })
      const published = yield* sluice.publishMany(
        Array.from({ length: 45 }, (_, i) => ({ type: "room.message", key: `room${i % 3}`, data: { i } }))
      )
      const all = () => receiver.received().flatMap((r) => transactionOf(r).events)
      yield* Effect.promise(() => waitFor(() => all().length >= 45, { description: "45 events in transactions" }))

      const requests = receiver.received()
      for (const r of requests) {
        expect(r.method).toBe("PUT")
        expect(r.path).toBe(`/_matrix/app/v1/transactions/${transactionOf(r).txnId}`)
        expect(r.headers["sluice-transaction-id"]).toBe(String(transactionOf(r).txnId))
        expect(r.headers["webhook-signature"]).toMatch(/^v1,/)
        expect(transactionOf(r).events.length).toBeLessThanOrEqual(10)
      }
      const ids = requests.map((r) => transactionOf(r).txnId).toSorted((a, b) => a - b)
      expect(ids).toEqual(Array.from({ length: ids.length }, (_, i) => i + 1))
      expect(ids.length).toBeGreaterThanOrEqual(5)
      expect(all().map((e) => e.id).toSorted()).toEqual(published.map((p) => p.id).toSorted())
      // Per key, the events appear in publish order, transaction after transaction.
      const byTxn = requests.toSorted((a, b) => transactionOf(a).txnId - transactionOf(b).txnId)
      for (let k = 0; k < 3; k++) {
        const seen = byTxn.flatMap((r) => transactionOf(r).events.filter((e) => e.key === `room${k}`).map((e) => e.data.i))
        expect(seen).toEqual(seen.toSorted((a, b) => a - b))
      }
    })
  )

  it.scoped("a transaction that fails twice is sent three times with the same id and events, then the next id follows", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver((_request, n) => ({ status: n <= 2 ? 500 : 200 }))
      yield* client.destinations.create({
        payload: {
          id: "flaky-txn",
          url: receiver.url,
          subscriptions: [">"],
          retry: fastRetry,
          batch: { maxEvents: 5, maxWaitMs: 300 }
        }
      })
      yield* sluice.publishMany(Array.from({ length: 3 }, (_, i) => ({ type: "a.b", key: "k", data: { i } })))
      yield* Effect.promise(() => receiver.waitForCount(3))
      const first = receiver.received().slice(0, 3).map(transactionOf)
      expect(new Set(first.map((t) => t.txnId)).size).toBe(1)
      expect(first.map((t) => t.events.map((e) => e.id))).toEqual([0, 1, 2].map(() => first[0]!.events.map((e) => e.id)))
      expect(receiver.received().slice(0, 3).map((r) => r.headers["sluice-attempt"])).toEqual(["1", "2", "3"])

      yield* sluice.publish({ type: "a.b", key: "k", data: { i: 3 } })
      const [, , , next] = yield* Effect.promise(() => receiver.waitForCount(4))
      expect(transactionOf(next!).txnId).toBe(first[0]!.txnId + 1)
      expect(transactionOf(next!).events.map((e) => e.data.i)).toEqual([3])
      const detail = yield* client.events.get({ path: { id: first[0]!.events[0]!.id } })
      expect(detail.deliveries[0]!.state).toBe("completed")
      expect(detail.deliveries[0]!.attemptLog.map((a) => a.outcome)).toEqual(["failure", "failure", "success"])
    })
  )

  it.scoped("a superseded event queued behind a paused batched destination never enters a transaction", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({
        payload: { id: "feed-txn", url: receiver.url, subscriptions: ["post.*"], batch: { maxEvents: 10, maxWaitMs: 50 } }
      })
      yield* client.destinations.pause({ path: { id: "feed-txn" } })
      yield* sluice.publish({ type: "post.created", key: "p1", version: 1, data: { i: 0 } })
      const deleted = yield* sluice.publish({ type: "post.deleted", key: "p1", version: 2, supersedes: true, data: { i: 1 } })
      yield* sluice.publish({ type: "post.created", key: "p2", version: 1, data: { i: 2 } })
      yield* client.destinations.resume({ path: { id: "feed-txn" } })
      yield* Effect.promise(() =>
        waitFor(() => receiver.received().flatMap((r) => transactionOf(r).events).length >= 2, {
          description: "the surviving events delivered"
        })
      )
      const events = receiver.received().flatMap((r) => transactionOf(r).events)
      expect(events.map((e) => e.type).toSorted()).toEqual(["post.created", "post.deleted"])
      expect(events.find((e) => e.key === "p1")!.id).toBe(deleted.id)
    })
  )

  it.scoped("transaction ids keep increasing across a broker restart", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      const { broker, restart } = yield* restartableBroker({ natsUrl: nats.url, databaseUrl })
      yield* broker.client.destinations.create({
        payload: { id: "restarted-txn", url: receiver.url, subscriptions: [">"], batch: { maxEvents: 1, maxWaitMs: 0 } }
      })
      yield* sluice.publishMany([{ type: "a.b", data: { i: 0 } }, { type: "a.b", data: { i: 1 } }])
      yield* Effect.promise(() => receiver.waitForCount(2))

      yield* restart
      yield* sluice.publish({ type: "a.b", data: { i: 2 } })
      const requests = yield* Effect.promise(() => receiver.waitForCount(3))
      expect(requests.map((r) => transactionOf(r).txnId).toSorted((a, b) => a - b)).toEqual([1, 2, 3])
    })
  )
})
