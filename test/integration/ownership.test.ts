/**
 * Destination ownership between broker processes, in one test process: two brokers on one
 * NATS and one database share the destinations through leases — each destination's actor
 * runs in one of them — and a broker that shuts down hands its destinations over at once.
 * (test/faults/multiProcess.test.ts kills real processes.)
 */
import { expect, layer } from "@effect/vitest"
import { Duration, Effect, Exit, Scope } from "effect"
import { producer, startBroker } from "../helpers/broker.js"
import { leaseHolders } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor, waitForEffect } from "../helpers/waitFor.js"

const ids = Array.from({ length: 6 }, (_, i) => `own-${i}`)

layer(NatsFixture.layer, { timeout: 120_000, excludeTestServices: true })("destination ownership", (it) => {
  it.scoped("two brokers split the destinations, both deliver, and a shutdown hands over at once", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const settings = (name: string) => ({ processName: name, leaseTtl: Duration.seconds(3) })
      const a = yield* startBroker({ natsUrl: nats.url, databaseUrl, settings: settings("broker-a") })
      const bScope = yield* Scope.make()
      yield* startBroker({ natsUrl: nats.url, databaseUrl, settings: settings("broker-b") }).pipe(Scope.extend(bScope))
      const receiver = yield* scopedReceiver()
      for (const id of ids) {
        yield* a.client.destinations.create({ payload: { id, url: `${receiver.url}/${id}`, subscriptions: [`own.${id}`] } })
      }

      const split = yield* waitForEffect(
        leaseHolders(nats.url, ids).pipe(
          Effect.map((holders) => {
            const names = [...holders.values()]
            const count = (name: string) => names.filter((n) => n === name).length
            return holders.size === ids.length && count("broker-a") === 3 && count("broker-b") === 3 && holders
          })
        ),
        { timeoutMs: 30_000, description: "three destinations held by each broker" }
      )
      expect(split.size).toBe(6)
      // The admin API names the holder, whichever broker answers.
      for (const id of ids) {
        const owner = yield* waitForEffect(
          a.client.destinations.get({ path: { id } }).pipe(Effect.map((view) => view.owner)),
          { description: `the owner of ${id} in the admin API` }
        )
        expect(owner).toBe(split.get(id))
      }

      const sluice = yield* producer(nats.url)
      yield* sluice.publishMany(ids.map((id) => ({ type: `own.${id}`, data: { round: 1 } })))
      yield* Effect.promise(() =>
        waitFor(() => ids.every((id) => receiver.received().some((r) => r.path === `/${id}`)), {
          description: "every destination delivered, whichever broker runs it"
        })
      )

      // broker-b shuts down: it gives its leases back, broker-a takes them on its next round.
      yield* Scope.close(bScope, Exit.void)
      yield* waitForEffect(
        leaseHolders(nats.url, ids).pipe(
          Effect.map((holders) => ids.every((id) => holders.get(id) === "broker-a"))
        ),
        { timeoutMs: 15_000, description: "broker-a holds every lease" }
      )
      // Given back, not left to expire: no takeover anywhere in the audit log.
      const audit = yield* a.client.audit.list({ urlParams: {} })
      expect(audit.items.filter((entry) => entry.action === "destination.taken_over")).toEqual([])
      yield* sluice.publishMany(ids.map((id) => ({ type: `own.${id}`, data: { round: 2 } })))
      yield* Effect.promise(() =>
        waitFor(
          () =>
            ids.every((id) =>
              receiver.received().some((r) => r.path === `/${id}` && (r.json as { data: { round: number } }).data.round === 2)
            ),
          { description: "every destination delivered again after the handover" }
        )
      )
    })
  )
})
