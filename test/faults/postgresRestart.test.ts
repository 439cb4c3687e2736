/**
 * Postgres stopped and started again for real, mid-delivery: a private cluster the test owns
 * (historyOutage.test.ts cuts a proxy in front of the shared server instead). While the
 * history database is down, deliveries go on — events published before and during the outage
 * all reach the receiver — and once it is back the history catches up: every event, every
 * delivery `completed`, every attempt once.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { producer, startBroker } from "../helpers/broker.js"
import { query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { privatePostgres } from "../helpers/privatePostgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

const BEFORE = 300
const DURING = 100
/** Requests received before Postgres is stopped: well into the backlog, far from its end. */
const MID_WAY = 60

const inputs = (from: number, n: number) =>
  Array.from({ length: n }, (_, j) => ({
    type: "pgrestart.event",
    ...((from + j) % 2 === 0 ? { key: `k${(from + j) % 20}` } : {}),
    data: { i: from + j }
  }))

layer(NatsFixture.layer, { timeout: 120_000, excludeTestServices: true })("Postgres stopped and restarted", (it) => {
  for (const mode of ["fast", "immediate"] as const) {
    it.scoped(
      `stopped (${mode}) mid-delivery: deliveries go on, and the history has every event, delivery and attempt once it is back`,
      () =>
        Effect.gen(function* () {
          const nats = yield* NatsFixture
          const pg = yield* privatePostgres
          const { client } = yield* startBroker({ natsUrl: nats.url, databaseUrl: pg.url })
          const sluice = yield* producer(nats.url)
          // Every 7th request fails once more to be retried: attempts and their facts pile up during the outage too.
          const receiver = yield* scopedReceiver((_request, n) => (n % 7 === 0 ? { status: 500 } : { delayMs: 5 }))
          const destination = `pgrestart-${mode}`
          yield* client.destinations.create({
            payload: {
              id: destination,
              url: receiver.url,
              subscriptions: ["pgrestart.>"],
              retry: { initialMs: 20, maxMs: 100, jitter: 0 },
              health: { failureThreshold: 1_000 }
            }
          })
          const ids = (yield* sluice.publishMany(inputs(0, BEFORE))).map((p) => p.id)
          yield* Effect.promise(() => receiver.waitForCount(MID_WAY, 20_000))

          yield* pg.stop(mode)
          const atStop = receiver.received().length
          expect(atStop).toBeLessThan(BEFORE)
          // Publishing needs only NATS.
          ids.push(...(yield* sluice.publishMany(inputs(BEFORE, DURING))).map((p) => p.id))
          const delivered = () => new Set(receiver.received().filter((r) => r.n % 7 !== 0).map((r) => String(r.headers["webhook-id"])))
          yield* waitForEffect(
            Effect.sync(() => ids.every((id) => delivered().has(id))),
            {
              description: () => `all ${ids.length} delivered while Postgres is stopped (${delivered().size} so far)`,
              timeoutMs: 45_000
            }
          )
          // Still down all along: nothing above needed it.
          expect(yield* pg.running).toBe(false)

          yield* pg.start
          const requests = receiver.received()
          yield* waitForEffect(
            query(pg.url, async (sql) => {
              const [events] = await sql<Array<{ n: number }>>`select count(*)::int as n from events where type = 'pgrestart.event'`
              const [completed] = await sql<Array<{ n: number }>>`
                select count(*)::int as n from deliveries where destination_id = ${destination} and state = 'completed'`
              const [attempts] = await sql<Array<{ n: number }>>`
                select count(*)::int as n from attempts where destination_id = ${destination}`
              return events!.n === ids.length && completed!.n === ids.length && attempts!.n === requests.length
            }),
            { description: `the history caught up: ${ids.length} events completed, ${requests.length} attempts`, timeoutMs: 45_000 }
          )
          // Nothing twice: per event, the receiver saw exactly the recorded attempts, one of them a success.
          const rows = yield* query(pg.url, (sql) => sql<Array<{ event_id: string; attempts: number; successes: number; distinct_attempts: number }>>`
            select event_id, count(*)::int as attempts, count(distinct attempt)::int as distinct_attempts,
                   count(*) filter (where outcome = 'success')::int as successes
            from attempts where destination_id = ${destination} group by event_id`)
          const perEvent = new Map<string, number>()
          for (const r of requests) perEvent.set(String(r.headers["webhook-id"]), (perEvent.get(String(r.headers["webhook-id"])) ?? 0) + 1)
          expect(rows.filter((r) => r.successes !== 1 || r.attempts !== r.distinct_attempts || r.attempts !== perEvent.get(r.event_id))).toEqual([])
          expect(new Set(rows.map((r) => r.event_id))).toEqual(new Set(ids))
        })
    )
  }
})
