/**
 * History never blocks delivery and never loses a fact: with the history database
 * unreachable, deliveries go on, facts wait in JetStream, and all of them are written once
 * it is back.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { producer, startBroker } from "../helpers/broker.js"
import { query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { databaseBehindProxy } from "../helpers/tcpProxy.js"
import { waitForEffect } from "../helpers/waitFor.js"

layer(NatsFixture.layer, { timeout: 90_000, excludeTestServices: true })("history outage", (it) => {
  it.scoped("deliveries continue while Postgres is unreachable, and every fact arrives once it is back", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const { databaseUrl, viaProxy, proxy } = yield* databaseBehindProxy
      const { client } = yield* startBroker({ natsUrl: nats.url, databaseUrl: viaProxy })
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver((_request, n) => ({ status: n % 3 === 0 ? 500 : 200 }))
      yield* client.destinations.create({
        payload: {
          id: "hooks",
          url: receiver.url,
          subscriptions: [">"],
          retry: { initialMs: 20, maxMs: 100, jitter: 0 },
          // Every third request fails: retries, not an outage.
          health: { failureThreshold: 1_000 }
        }
      })

      proxy.cut()
      const published = yield* sluice.publishMany(
        Array.from({ length: 200 }, (_, i) => ({ type: "order.paid", key: `o${i % 20}`, data: { i } }))
      )
      // Delivery does not wait for the database.
      const ids = new Set(published.map((p) => p.id))
      yield* waitForEffect(
        Effect.sync(() => {
          const ok = new Set(
            receiver
              .received()
              .filter((r) => r.n % 3 !== 0)
              .map((r) => String(r.headers["webhook-id"]))
          )
          return [...ids].every((id) => ok.has(id))
        }),
        {
          description: () => `all 200 delivered while the history database is unreachable (${receiver.received().length} requests)`,
          // About 300 requests in 20 ordered lanes with retries: slow on a loaded 2-core machine.
          timeoutMs: 60_000
        }
      )

      proxy.restore()
      const expectedAttempts = receiver.received().length
      yield* waitForEffect(
        query(databaseUrl, async (sql) => {
          const [events] = await sql`select count(*)::int as n from events`
          const [completed] = await sql`select count(*)::int as n from deliveries where state = 'completed'`
          const [attempts] = await sql`select count(*)::int as n from attempts`
          return events!.n === 200 && completed!.n === 200 && attempts!.n === expectedAttempts
        }),
        { description: "every event, delivery and attempt written after the outage", timeoutMs: 45_000 }
      )
      // Written once: no attempt twice.
      const [dupes] = yield* query(
        databaseUrl,
        (sql) => sql`select count(*)::int as n from (select event_id, attempt from attempts group by 1, 2 having count(*) > 1) d`
      )
      expect(dupes!.n).toBe(0)
    })
  )
})
