/**
 * The first slice end to end, against real nats-server, a real HTTP receiver, and both
 * history databases: publish → JetStream → destination actor → signed POST → history.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { createHmac, timingSafeEqual } from "node:crypto"
import type { AdminClient } from "../helpers/broker.js"
import { producer, startBroker } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** Standard Webhooks verification written from the spec, independent of the broker's Signer. */
const verify = (secret: string, headers: Record<string, string | string[] | undefined>, body: string): boolean => {
  const id = String(headers["webhook-id"])
  const timestamp = String(headers["webhook-timestamp"])
  const key = Buffer.from(secret.slice("whsec_".length), "base64")
  const expected = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest()
  return String(headers["webhook-signature"])
    .split(" ")
    .some((sig) => {
      const [version, value] = sig.split(",")
      const given = Buffer.from(value ?? "", "base64")
      return version === "v1" && given.length === expected.length && timingSafeEqual(given, expected)
    })
}

const fastRetry = { initialMs: 50, factor: 2, maxMs: 1000, jitter: 0 }

const suite = (database: "pglite" | "postgres") =>
  layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })(`delivery with ${database} history`, (it) => {
    const setup = Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = database === "postgres" ? yield* throwawayDatabase : undefined
      const broker = yield* startBroker({ natsUrl: nats.url, databaseUrl })
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      return { ...broker, sluice, receiver }
    })

    const completed = (client: AdminClient, id: string) =>
      waitForEffect(
        client.events.get({ path: { id } }).pipe(
          Effect.map((d) => (d.deliveries.length > 0 && d.deliveries.every((x) => x.state === "completed") ? d : undefined))
        ),
        { description: `history shows event ${id} completed` }
      )

    it.scoped("delivers a published event, signed, and history shows it completed", () =>
      Effect.gen(function* () {
        const { client, sluice, receiver } = yield* setup
        const created = yield* client.destinations.create({
          payload: { id: "orders", url: `${receiver.url}/hooks`, subscriptions: ["order.*"] }
        })
        const other = yield* client.destinations.create({
          payload: { url: `${receiver.url}/other`, subscriptions: ["invoice.>"] }
        })
        expect(other.id).toMatch(/^[0-9a-z]+$/)

        const published = yield* sluice.publish({ type: "order.created", key: "o-1", data: { total: 42 } })
        yield* sluice.publish({ type: "customer.created", data: {} })

        const [request] = yield* Effect.promise(() => receiver.waitForCount(1))
        expect(request!.path).toBe("/hooks")
        expect(request!.headers["webhook-id"]).toBe(published.id)
        expect(verify(created.secret, request!.headers, request!.body)).toBe(true)
        expect(request!.json).toMatchObject({ id: published.id, type: "order.created", key: "o-1", data: { total: 42 } })

        const detail = yield* completed(client, published.id)
        expect(detail.event).toMatchObject({ id: published.id, type: "order.created", key: "o-1", data: { total: 42 } })
        expect(detail.deliveries).toHaveLength(1)
        expect(detail.deliveries[0]).toMatchObject({ destinationId: "orders", state: "completed", attempts: 1 })
        expect(detail.deliveries[0]!.attemptLog).toMatchObject([{ attempt: 1, outcome: "success", statusCode: 200 }])
        // Events nobody subscribed to are not delivered.
        expect(receiver.received().map((r) => (r.json as { type: string }).type)).toEqual(["order.created"])
      })
    )

    it.scoped("a receiver that fails twice then succeeds shows three attempts", () =>
      Effect.gen(function* () {
        const { client, sluice, receiver } = yield* setup
        receiver.setScript((_req, n) => (n <= 2 ? { status: 500, body: "boom" } : { status: 204 }))
        for (const ordering of ["key", "none"] as const) {
          yield* client.destinations.create({
            payload: { id: `flaky-${ordering}`, url: `${receiver.url}/${ordering}`, subscriptions: [`flaky.${ordering}`], ordering, retry: fastRetry }
          })
        }
        for (const ordering of ["key", "none"] as const) {
          const n0 = receiver.received().length
          const published = yield* sluice.publish({ type: `flaky.${ordering}`, key: "k", data: { ordering } })
          const detail = yield* completed(client, published.id)
          const delivery = detail.deliveries[0]!
          expect(delivery.attempts).toBe(3)
          expect(delivery.attemptLog.map((a) => [a.attempt, a.outcome, a.statusCode])).toEqual([
            [1, "failure", 500],
            [2, "failure", 500],
            [3, "success", 204]
          ])
          expect(delivery.attemptLog[0]!.responseExcerpt).toBe("boom")
          const requests = receiver.received().slice(n0)
          expect(requests.map((r) => r.headers["webhook-id"])).toEqual([published.id, published.id, published.id])
          receiver.setScript((_req, n) => (n <= n0 + 5 ? { status: 500, body: "boom" } : { status: 204 }))
        }
      })
    )

    it.scoped("the same idempotency key published twice is stored and delivered once", () =>
      Effect.gen(function* () {
        const { client, sluice, receiver } = yield* setup
        yield* client.destinations.create({ payload: { id: "payments", url: receiver.url, subscriptions: ["payment.>"] } })
        const first = yield* sluice.publish({ type: "payment.captured", idempotencyKey: "pay-77", data: { amount: 5 } })
        const again = yield* sluice.publish({ type: "payment.captured", idempotencyKey: "pay-77", data: { amount: 5 } })
        expect(again).toMatchObject({ id: first.id, duplicate: true })
        yield* completed(client, first.id)
        yield* sluice.publish({ type: "payment.refunded", data: {} }).pipe(Effect.flatMap((r) => completed(client, r.id)))
        expect(receiver.received().filter((r) => r.headers["webhook-id"] === first.id)).toHaveLength(1)
      })
    )
  })

suite("pglite")
suite("postgres")
