/**
 * The lost-event signal: events a destination will never get — dead-lettered, dropped while
 * disabled, expired from the stream before it took them — are counted, shown by the admin
 * API, and reported to the destination as a `sluice.sync_error` event once it can take one,
 * so the receiver knows to re-fetch and reconcile.
 */
import { expect, layer } from "@effect/vitest"
import { Duration, Effect } from "effect"
import type { AdminClient } from "../helpers/broker.js"
import { brokerOnFixture, producer, startBroker } from "../helpers/broker.js"
import { consumerInfo, withJsm } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitFor, waitForEffect } from "../helpers/waitFor.js"

interface SyncError {
  readonly type: string
  readonly data: {
    readonly destinationId: string
    readonly since: string
    readonly until: string
    readonly dead: number
    readonly disabled: number
    readonly expired: number
  }
}

const syncErrors = (requests: ReadonlyArray<ReceivedRequest>) =>
  requests.map((r) => r.json as SyncError).filter((e) => e.type === "sluice.sync_error")

const total = (errors: ReadonlyArray<SyncError>, kind: "dead" | "disabled" | "expired") =>
  errors.reduce((n, e) => n + e.data[kind], 0)

const noAlert = (client: AdminClient, id: string) =>
  waitForEffect(
    client.destinations.get({ path: { id } }).pipe(Effect.map((d) => d.lostEvents === undefined)),
    { description: `no lost-event alert left on ${id}` }
  )

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("lost-event signal", (it) => {
  it.scoped("dead-lettered events are reported to the destination in a sluice.sync_error event and in the audit log", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver((request) =>
        (request.json as { type: string }).type === "sluice.sync_error" ? { status: 200 } : { status: 422 }
      )
      yield* client.destinations.create({ payload: { id: "crm-dead", url: receiver.url, subscriptions: ["contact.*"] } })
      const published = yield* sluice.publishMany([
        { type: "contact.updated", data: { i: 0 } },
        { type: "contact.updated", data: { i: 1 } }
      ])
      yield* Effect.promise(() =>
        waitFor(() => total(syncErrors(receiver.received()), "dead") === 2, { description: "two dead events reported" })
      )
      const [error] = syncErrors(receiver.received())
      expect(error!.data).toMatchObject({ destinationId: "crm-dead", disabled: 0, expired: 0 })
      expect(Date.parse(error!.data.since)).toBeLessThanOrEqual(Date.parse(error!.data.until))
      const detail = yield* client.events.get({ path: { id: published[0]!.id } })
      expect(Date.parse(error!.data.since)).toBeLessThanOrEqual(Date.parse(detail.event.receivedAt) + 1)
      yield* noAlert(client, "crm-dead")
      const audit = yield* waitForEffect(
        client.audit
          .list({ urlParams: { destination: "crm-dead" } })
          .pipe(Effect.map((page) => page.items.find((entry) => entry.action === "destination.sync_error_sent"))),
        { description: "the report in the audit log" }
      )
      expect(audit.actor).toBe("sluice")
    })
  )

  it.scoped("events dropped while disabled show as an alert, and are reported once the destination is enabled", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "crm-off", url: receiver.url, subscriptions: ["contact.*"] } })
      yield* client.destinations.disable({ path: { id: "crm-off" }, payload: { reason: "maintenance" } })
      yield* sluice.publishMany([
        { type: "contact.updated", data: { i: 0 } },
        { type: "contact.deleted", data: { i: 1 } }
      ])
      const alert = yield* waitForEffect(
        client.destinations
          .get({ path: { id: "crm-off" } })
          .pipe(Effect.map((d) => (d.lostEvents?.disabled === 2 ? d.lostEvents : undefined))),
        { description: "an alert for two events dropped while disabled" }
      )
      expect(alert).toMatchObject({ dead: 0, disabled: 2, expired: 0 })
      expect(receiver.received()).toHaveLength(0)

      yield* client.destinations.enable({ path: { id: "crm-off" } })
      yield* Effect.promise(() => receiver.waitForCount(1))
      const errors = syncErrors(receiver.received())
      expect(errors).toHaveLength(1)
      expect(errors[0]!.data).toMatchObject({ destinationId: "crm-off", dead: 0, disabled: 2, expired: 0 })
      yield* noAlert(client, "crm-off")
    })
  )
})

layer(NatsFixture.layer, { timeout: 90_000, excludeTestServices: true })("lost-event signal, stream retention", (it) => {
  it.scoped("events that expire from the stream while a destination is paused are reported when it resumes", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const { client } = yield* startBroker({
        natsUrl: nats.url,
        databaseUrl: yield* throwawayDatabase,
        // The stream keeps events for 3 s only: long enough to be recorded, short enough to wait out.
        settings: { streamMaxAge: Duration.seconds(3), duplicateWindow: Duration.millis(500) }
      })
      const sluice = yield* producer(nats.url)
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "crm-late", url: receiver.url, subscriptions: ["contact.*"] } })
      yield* client.destinations.pause({ path: { id: "crm-late" } })
      yield* waitForEffect(consumerInfo(nats.url, "crm-late").pipe(Effect.map((info) => info.num_waiting === 0)), {
        description: "no pull request open for the paused destination"
      })
      const published = yield* sluice.publishMany(
        Array.from({ length: 3 }, (_, i) => ({ type: "contact.updated", data: { i } }))
      )
      // Another type, not subscribed: it expires too but was never this destination's loss.
      yield* sluice.publish({ type: "invoice.paid", data: {} })
      for (const event of published) {
        yield* waitForEffect(client.events.get({ path: { id: event.id } }).pipe(Effect.as(true)), {
          description: `event ${event.id} in the history`
        })
      }
      const lastSeq = Math.max(...published.map((p) => p.seq))
      yield* waitForEffect(
        withJsm(nats.url, (jsm) => jsm.streams.info("SLUICE_EVENTS")).pipe(Effect.map((info) => info.state.first_seq > lastSeq + 1 || info.state.messages === 0)),
        { description: "the events expired from the stream", timeoutMs: 30_000 }
      )

      yield* client.destinations.resume({ path: { id: "crm-late" } })
      yield* Effect.promise(() => receiver.waitForCount(1, 20_000))
      const errors = syncErrors(receiver.received())
      expect(errors).toHaveLength(1)
      expect(errors[0]!.data).toMatchObject({ destinationId: "crm-late", dead: 0, disabled: 0, expired: 3 })
      expect(receiver.received()).toHaveLength(1)
    })
  )
})
