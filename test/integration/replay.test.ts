/**
 * Operator replays against real parts: one event, a destination's dead deliveries since a
 * time, and everything it subscribed to since a time — only that destination receives
 * them, as new attempts of the same deliveries, and each replay is audited.
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor, waitForEffect } from "../helpers/waitFor.js"

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("replay", (it) => {
  it.scoped("a dead event replayed after the receiver is fixed completes, with the new attempt in its history", () =>
    Effect.gen(function* () {
      const { client, sluice, databaseUrl } = yield* brokerOnFixture
      let broken = true
      // It rejects the events while broken, and takes Sluice's report of what it lost.
      const isEvent = (r: ReceivedRequest) => (r.json as { type: string }).type === "contact.updated"
      const receiver = yield* scopedReceiver((r) => ({ status: broken && isEvent(r) ? 422 : 200 }))
      const bystander = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "crm", url: receiver.url, subscriptions: [">"] } })
      yield* client.destinations.create({ payload: { id: "other", url: bystander.url, subscriptions: [">"] } })
      const since = new Date().toISOString()
      const events = yield* sluice.publishMany(
        Array.from({ length: 3 }, (_, i) => ({ type: "contact.updated", key: `c${i}`, data: { i } }))
      )
      const dead = (id: string) =>
        waitForEffect(
          client.events.get({ path: { id } }).pipe(
            Effect.map((d) => d.deliveries.find((x) => x.destinationId === "crm" && x.state === "dead"))
          ),
          { description: `event ${id} dead at crm` }
        )
      for (const e of events) yield* dead(e.id)
      yield* Effect.promise(() => bystander.waitForCount(3))
      broken = false

      const one = yield* client.events.replay({ path: { id: events[0]!.id }, payload: { destinationId: "crm" } })
      expect(one.replayed).toBe(1)
      const detail = yield* waitForEffect(
        client.events.get({ path: { id: events[0]!.id } }).pipe(
          Effect.map((d) => d.deliveries.find((x) => x.destinationId === "crm" && x.state === "completed"))
        ),
        { description: "the replayed event completed" }
      )
      expect(detail.attemptLog.map((a) => a.outcome)).toEqual(["rejected", "success"])

      const rest = yield* client.destinations.replay({ path: { id: "crm" }, payload: { since, states: ["dead"] } })
      expect(rest.replayed).toBe(2)
      yield* Effect.promise(() =>
        waitFor(() => receiver.received().filter(isEvent).length === 6, { description: "three replayed requests" })
      )
      // Only the destination replayed to received anything again.
      expect(bystander.received()).toHaveLength(3)
      // History is written behind delivery: wait for both operator actions to land.
      const audit = yield* waitForEffect(
        query(
          databaseUrl,
          (sql) => sql`select action from audit_log where destination_id = 'crm' and action like '%replayed' order by at`
        ).pipe(Effect.map((rows) => (rows.length >= 2 ? rows : undefined))),
        { description: "both replays in the audit log" }
      )
      expect(audit.map((r) => r.action)).toEqual(["event.replayed", "deliveries.replayed"])
    })
  )

  it.scoped("everything since a time is replayed from the stream to one destination", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      const bystander = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "search", url: receiver.url, subscriptions: ["doc.*"] } })
      yield* client.destinations.create({ payload: { id: "bystander", url: bystander.url, subscriptions: [">"] } })
      yield* sluice.publish({ type: "doc.saved", data: { before: true } })
      yield* Effect.promise(() => receiver.waitForCount(1))
      const since = new Date(Date.now() + 1).toISOString()
      yield* Effect.promise(() => waitFor(() => Date.now() > Date.parse(since) + 5, { description: "time passes" }))
      const later = yield* sluice.publishMany([
        { type: "doc.saved", data: { i: 1 } },
        { type: "user.created", data: {} },
        { type: "doc.deleted", data: { i: 2 } }
      ])
      yield* Effect.promise(() => receiver.waitForCount(3))
      const result = yield* client.destinations.replayStream({ path: { id: "search" }, payload: { since } })
      expect(result.replayed).toBe(2)
      const all = yield* Effect.promise(() => receiver.waitForCount(5))
      expect(all.slice(3).map((r) => r.headers["webhook-id"])).toEqual([later[0]!.id, later[2]!.id])
      expect(bystander.received()).toHaveLength(4)
    })
  )
})
