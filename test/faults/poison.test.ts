/**
 * Poison events: messages on `sluice.events.>` that no envelope decoder accepts, or whose
 * delivery fails before it reaches the receiver whatever the receiver does. Each one must end
 * `dead` at once with the reason recorded — never retried, redelivered or restarting the
 * actor — and every good event published around it must still be delivered.
 *
 * They are published straight to JetStream, as a producer bypassing the SDK and ingest could:
 * - not JSON; JSON that is no envelope; invalid UTF-8 inside an otherwise valid envelope (not
 *   delivered with the bad bytes replaced); a NUL byte, which the recorded reason quotes (and
 *   which Postgres refuses in text: it would stop the history writer for every destination);
 * - envelopes whose own `headers` HTTP cannot send (undici refuses them before the request
 *   leaves): CR/LF in a value, a character beyond U+00FF, `transfer-encoding`, `expect`,
 *   `upgrade`, and `host` (which would re-route the request). Before, each failed every
 *   attempt, counted against the destination's health and kept its key's lane blocked.
 */
import { expect, layer } from "@effect/vitest"
import { jetstream } from "@nats-io/jetstream"
import { headers as natsHeaders } from "@nats-io/transport-node"
import { connect } from "@nats-io/transport-node"
import { Subjects } from "@sluice/protocol"
import { Effect } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { consumerInfo, query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

const DESTINATION = "poison-sink"
const occurredAt = "2026-11-23T09:00:00Z"

/** A raw JetStream publisher on a connection of the test's own, closed with the scope. */
const rawPublisher = (natsUrl: string) =>
  Effect.gen(function* () {
    const nc = yield* Effect.acquireRelease(
      Effect.promise(() => connect({ servers: natsUrl })),
      (nc) => Effect.promise(() => nc.close())
    )
    const js = jetstream(nc)
    return (type: string, body: string | Uint8Array, eventIdHeader?: string) =>
      Effect.promise(() => {
        const h = natsHeaders()
        if (eventIdHeader !== undefined) h.set(Subjects.Headers.eventId, eventIdHeader)
        return js.publish(Subjects.eventSubject(type), body, { headers: h })
      }).pipe(Effect.map((ack) => ack.seq))
  })

const envelope = (id: string, fields: Record<string, unknown> = {}) =>
  JSON.stringify({ id, type: "poison.headers", key: "k1", occurredAt, data: { poison: true }, ...fields })

/** An envelope with `"data":{"s":"<bytes>"}` where the bytes are not UTF-8. */
const withInvalidUtf8 = (id: string): Uint8Array => {
  const [before, after] = envelope(id, { type: "poison.utf8", data: { s: "@" } }).split("@")
  return Buffer.concat([Buffer.from(before!), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(after!)])
}

/** Poison envelopes with sendable JSON but unsendable headers, and the problem each reason names. */
const badHeaders: ReadonlyArray<readonly [id: string, headers: Record<string, string>, reason: RegExp]> = [
  ["poison-crlf", { "x-note": "a\r\nx-injected: 1" }, /header x-note holds characters/],
  ["poison-emoji", { "x-mood": "\u{1F600}" }, /header x-mood holds characters/],
  ["poison-te", { "Transfer-Encoding": "chunked" }, /header Transfer-Encoding is the sender's/],
  ["poison-expect", { expect: "100-continue" }, /header expect is the sender's/],
  ["poison-upgrade", { upgrade: "websocket" }, /header upgrade is the sender's/],
  ["poison-host", { host: "other-tenant.example" }, /header host is the sender's/]
]

layer(NatsFixture.layer, { timeout: 90_000, excludeTestServices: true })("poison events", (it) => {
  it.scoped(
    "each poison message is dead at once with its reason; the events around it, its key's included, are delivered once",
    () =>
      Effect.gen(function* () {
        const { client, sluice, natsUrl, databaseUrl } = yield* brokerOnFixture
        const receiver = yield* scopedReceiver()
        yield* client.destinations.create({
          payload: {
            id: DESTINATION,
            url: `${receiver.url}/hooks`,
            subscriptions: ["poison.>"],
            // One failure would take it down: a poison event that reached the sender would show at once.
            health: { failureThreshold: 1 },
            retry: { initialMs: 50, maxMs: 200, jitter: 0 }
          }
        })
        const publishRaw = yield* rawPublisher(natsUrl)
        const good = (from: number) =>
          sluice.publishMany(Array.from({ length: 10 }, (_, i) => ({ type: "poison.ok", key: `k${i % 3}`, data: { i: from + i } })))

        const before = yield* good(0)
        // seq → the reason its dead delivery must give, for messages recorded under their position.
        const bySeq = new Map<number, RegExp>()
        bySeq.set(yield* publishRaw("poison.text", "this is not JSON"), /undecodable event: .*not valid JSON/)
        bySeq.set(yield* publishRaw("poison.shape", JSON.stringify({ hello: "world" })), /undecodable event: .*is missing/)
        bySeq.set(yield* publishRaw("poison.utf8", withInvalidUtf8("poison-utf8")), /undecodable event: the message is not valid UTF-8/)
        // Quoted in the reason: the NUL must not reach Postgres.
        bySeq.set(yield* publishRaw("poison.nul", "\u0000{oops"), /undecodable event: .*not valid JSON/)
        // A header id that is no event id is not trusted as one.
        bySeq.set(yield* publishRaw("poison.text", "still not JSON", "not an id!"), /undecodable event/)
        const byId = new Map<string, RegExp>()
        const validHeaderId = "poison-header-id"
        yield* publishRaw("poison.text", "{", validHeaderId)
        byId.set(validHeaderId, /undecodable event/)
        for (const [id, headers, reason] of badHeaders) {
          yield* publishRaw("poison.headers", envelope(id, { headers }))
          byId.set(id, new RegExp(`undeliverable event: ${reason.source}`))
        }
        const after = yield* good(10)
        const goodIds = [...before, ...after].map((p) => p.id)
        const poisonCount = bySeq.size + byId.size

        // Every good event arrives, k1's included though poison of key k1 sits between them.
        yield* waitForEffect(
          Effect.sync(() => {
            const seen = new Set(receiver.received().map((r) => String(r.headers["webhook-id"])))
            return goodIds.every((id) => seen.has(id))
          }),
          { description: () => `the 20 good events at the receiver (${receiver.received().length} requests)`, timeoutMs: 30_000 }
        )
        // No poison reached the receiver; no good event twice (the receiver always answers 200).
        const events = receiver.received().filter((r) => r.headers["sluice-event-type"] !== "sluice.sync_error")
        expect(events.map((r) => r.headers["webhook-id"]).sort()).toEqual([...goodIds].sort())

        // Each poison message is dead in the history with the reason, and nothing waits or loops in JetStream.
        const dead = yield* waitForEffect(
          query(databaseUrl, async (sql) => {
            const rows = await sql<Array<{ event_id: string; last_error: string; attempts: number }>>`
              select event_id, last_error, attempts from deliveries where destination_id = ${DESTINATION} and state = 'dead'`
            const [completed] = await sql<Array<{ n: number }>>`
              select count(*)::int as n from deliveries where destination_id = ${DESTINATION} and state = 'completed'`
            return rows.length >= poisonCount && completed!.n === 20 && rows
          }),
          { description: `${poisonCount} dead and 20 completed deliveries in the history`, timeoutMs: 30_000 }
        )
        expect(dead).toHaveLength(poisonCount)
        for (const row of dead) {
          const reason = row.event_id.startsWith("seq-") ? bySeq.get(Number(row.event_id.slice(4))) : byId.get(row.event_id)
          expect({ id: row.event_id, reason: row.last_error, attempts: row.attempts }).toEqual({
            id: row.event_id,
            reason: expect.stringMatching(reason ?? /^never$/),
            // Dead on arrival: never sent.
            attempts: 0
          })
        }
        expect(dead.find((row) => row.event_id.startsWith("seq-") && row.last_error.includes("\u0000"))).toBeUndefined()

        const consumer = yield* waitForEffect(
          consumerInfo(natsUrl, DESTINATION).pipe(
            Effect.map((info) => info.num_pending === 0 && info.num_ack_pending === 0 && info)
          ),
          { description: "the destination's consumer settled" }
        )
        // Terminated, not naked: JetStream redelivered nothing.
        expect(consumer.num_redelivered).toBe(0)
        const [checks] = yield* query(databaseUrl, (sql) => sql<Array<{ restarts: number; down: number }>>`
          select (select count(*)::int from audit_log where action = 'actor.restarted' and destination_id = ${DESTINATION}) as restarts,
                 (select count(*)::int from health_transitions where destination_id = ${DESTINATION} and to_state = 'down') as down`)
        // The actor never crashed, and no poison counted against the destination's health.
        expect(checks).toEqual({ restarts: 0, down: 0 })

        // The receiver is told what it lost: one dead event per poison message, no more.
        const reported = yield* waitForEffect(
          Effect.sync(() => {
            const total = receiver
              .received()
              .filter((r) => r.headers["sluice-event-type"] === "sluice.sync_error")
              .reduce((n, r) => n + (r.json as { data: { dead: number } }).data.dead, 0)
            return total >= poisonCount && total
          }),
          { description: `sync_error reports of ${poisonCount} dead events`, timeoutMs: 15_000 }
        )
        expect(reported).toBe(poisonCount)
      })
  )
})
