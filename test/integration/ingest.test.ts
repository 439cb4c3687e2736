/**
 * HTTP ingest and access tokens against a real nats-server and broker: events posted over
 * HTTP are stored and delivered, Idempotency-Key stores one event, bad input is named and
 * stores nothing, tokens are required and not interchangeable, oversize bodies get 413,
 * NATS being away gets 503 with Retry-After and nothing stored later, and a producer reads
 * an event's state per destination with its own token (`GET /events/:id/status`, the SDK's
 * `status`).
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { connect as connectNats } from "@nats-io/transport-node"
import { Subjects } from "@sluice/protocol"
import { connect, Sluice } from "@sluice/sdk"
import { Effect, Either, Option } from "effect"
import { mkdtemp, readFile, rm, stat } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { apiClient, brokerOnFixture, startBroker, TEST_ADMIN_TOKEN, TEST_PRODUCER_TOKEN } from "../helpers/broker.js"
import { withJsm } from "../helpers/inspect.js"
import { NatsFixture, tempNatsServer } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

interface Answer {
  readonly status: number
  readonly headers: Headers
  readonly json: unknown
}

/** A request sent as a producer in another language would send it. */
const request = (
  url: string,
  init: { readonly method?: string; readonly body?: RequestInit["body"]; readonly headers?: Record<string, string>; readonly duplex?: "half" }
): Effect.Effect<Answer> =>
  Effect.promise(async () => {
    const response = await fetch(url, init as RequestInit)
    const text = await response.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = text
    }
    return { status: response.status, headers: response.headers, json }
  })

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

/** POST /api/v1/events with the producer token (unless headers say otherwise). */
const ingest = (adminUrl: string, body: unknown, headers: Record<string, string> = bearer(TEST_PRODUCER_TOKEN)) =>
  request(`${adminUrl}/api/v1/events`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body)
  })

/** How many messages SLUICE_EVENTS holds for an event type. */
const storedOfType = (natsUrl: string, type: string) =>
  withJsm(natsUrl, async (jsm) => {
    const subject = Subjects.eventSubject(type)
    const info = await jsm.streams.info(Subjects.EVENTS_STREAM, { subjects_filter: subject })
    return info.state.subjects?.[subject] ?? 0
  })

/** GET /api/v1/events/:id/status with the producer token (unless headers say otherwise). */
const statusOf = (adminUrl: string, id: string, headers: Record<string, string> = bearer(TEST_PRODUCER_TOKEN)) =>
  request(`${adminUrl}/api/v1/events/${encodeURIComponent(id)}/status`, { headers })

const idsIn = (answer: Answer) => (answer.json as { events: ReadonlyArray<{ id: string; duplicate: boolean }> }).events


/** An RFC 3339 timestamp as the API writes them (UTC, milliseconds). */
const timestamp = expect.stringMatching(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("HTTP ingest", (it) => {
  it.scoped("stores and delivers one event and a batch, answering with their ids in order", () =>
    Effect.gen(function* () {
      const { adminUrl, client, natsUrl } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "sink", url: receiver.url, subscriptions: ["ingest.delivered.>"] } })

      const single = yield* ingest(adminUrl, { type: "ingest.delivered.one", key: "k-1", data: { n: 1 } })
      expect(single.status).toBe(201)
      const [one] = idsIn(single)
      expect(one).toEqual({ id: expect.stringMatching(/^[0-9A-HJKMNP-TV-Z]{26}$/), duplicate: false })

      const batch = yield* ingest(adminUrl, {
        events: [
          { type: "ingest.delivered.many", data: { n: 2 } },
          { id: "producer-chosen-id-3", type: "ingest.delivered.many", data: { n: 3 } },
          { type: "ingest.delivered.many", data: { n: 4 } }
        ]
      })
      expect(batch.status).toBe(201)
      const many = idsIn(batch)
      expect(many.map((e) => e.duplicate)).toEqual([false, false, false])
      expect(many[1]!.id).toBe("producer-chosen-id-3")

      const ids = [one!.id, ...many.map((e) => e.id)]
      const received = yield* Effect.promise(() => receiver.waitForCount(4))
      expect(received.map((r) => r.headers["webhook-id"])).toEqual(ids)
      expect(received.map((r) => (r.json as { data: { n: number } }).data.n)).toEqual([1, 2, 3, 4])
      expect(yield* storedOfType(natsUrl, "ingest.delivered.many")).toBe(3)
      for (const id of ids) {
        const detail = yield* waitForEffect(client.events.get({ path: { id } }), { description: `event ${id} in history` })
        expect(detail.event.id).toBe(id)
      }

      // Sending the same batch again (as after a lost answer) stores nothing new for the event with an id.
      const again = yield* ingest(adminUrl, { events: [{ id: "producer-chosen-id-3", type: "ingest.delivered.many", data: { n: 3 } }] })
      expect(again.status).toBe(200)
      expect(idsIn(again)).toEqual([{ id: "producer-chosen-id-3", duplicate: true }])
    })
  )

  it.scoped("an Idempotency-Key sent twice stores one event and answers its id both times", () =>
    Effect.gen(function* () {
      const { adminUrl, natsUrl } = yield* brokerOnFixture
      const event = { type: "ingest.idempotent", data: { amount: 10 } }
      const headers = { ...bearer(TEST_PRODUCER_TOKEN), "idempotency-key": "checkout-4711" }

      const first = yield* ingest(adminUrl, event, headers)
      const second = yield* ingest(adminUrl, event, headers)
      expect(first.status).toBe(201)
      expect(second.status).toBe(200)
      expect(idsIn(second)).toEqual([{ id: idsIn(first)[0]!.id, duplicate: true }])
      expect(yield* storedOfType(natsUrl, "ingest.idempotent")).toBe(1)

      // The key travels in the envelope; a conflicting one in the body, or a batch, is refused.
      const conflicting = yield* ingest(adminUrl, { ...event, idempotencyKey: "other" }, headers)
      expect(conflicting.status).toBe(400)
      expect(conflicting.json).toMatchObject({ _tag: "InvalidRequest", field: "Idempotency-Key" })
      const batch = yield* ingest(adminUrl, { events: [event] }, headers)
      expect(batch.status).toBe(400)
      expect(batch.json).toMatchObject({ field: "Idempotency-Key", message: expect.stringContaining("single event") })
    })
  )

  it.scoped("answers 400 naming the bad field, and stores nothing of a batch with one bad event", () =>
    Effect.gen(function* () {
      const { adminUrl, natsUrl } = yield* brokerOnFixture

      const badType = yield* ingest(adminUrl, { type: "not a type!", data: {} })
      expect(badType.status).toBe(400)
      expect(badType.json).toMatchObject({ _tag: "InvalidRequest", field: "type", message: expect.stringMatching(/^type: /) })

      const batch = yield* ingest(adminUrl, {
        events: [
          { id: "valid-before-bad-0", type: "ingest.rejected", data: {} },
          { id: "valid-before-bad-1", type: "ingest.rejected", data: {} },
          { type: "ingest.rejected", version: -1, data: {} }
        ]
      })
      expect(batch.status).toBe(400)
      expect(batch.json).toMatchObject({ field: "events.2.version", message: expect.stringMatching(/^events\.2\.version: /) })
      expect(yield* storedOfType(natsUrl, "ingest.rejected")).toBe(0)

      const unknownField = yield* ingest(adminUrl, { events: [{ type: "ingest.rejected", colour: "red" }] })
      expect(unknownField.json).toMatchObject({ field: "events.0.colour" })
      expect((yield* ingest(adminUrl, "{ not json")).json).toMatchObject({ field: "(body)", message: expect.stringContaining("JSON") })
      expect((yield* ingest(adminUrl, [{ type: "ingest.rejected" }])).json).toMatchObject({ field: "(body)" })
      expect((yield* ingest(adminUrl, { events: [] })).json).toMatchObject({ field: "events" })
      const longKey = yield* ingest(adminUrl, { type: "ingest.rejected" }, { ...bearer(TEST_PRODUCER_TOKEN), "idempotency-key": "k".repeat(300) })
      expect(longKey.json).toMatchObject({ field: "Idempotency-Key", message: expect.stringContaining("256") })
      expect(yield* storedOfType(natsUrl, "ingest.rejected")).toBe(0)
    })
  )

  it.scoped("requires the right token: 401 without one or with a wrong one, and neither token opens the other's door", () =>
    Effect.gen(function* () {
      const { adminUrl } = yield* brokerOnFixture
      const event = { type: "ingest.auth", data: {} }

      for (const headers of [{}, bearer("wrong-token-0123456789"), bearer(TEST_ADMIN_TOKEN), { authorization: "Basic Zm9vOmJhcg==" }]) {
        const answer = yield* ingest(adminUrl, event, headers)
        expect(answer.status).toBe(401)
        expect(answer.json).toMatchObject({ _tag: "Unauthorized", message: expect.stringContaining("producer token") })
      }
      expect((yield* ingest(adminUrl, event)).status).toBe(201)

      const list = (headers: Record<string, string>) => request(`${adminUrl}/api/v1/destinations`, { headers })
      for (const headers of [{}, bearer("wrong-token-0123456789"), bearer(TEST_PRODUCER_TOKEN)]) {
        const answer = yield* list(headers)
        expect(answer.status).toBe(401)
        expect(answer.json).toMatchObject({ _tag: "Unauthorized", message: expect.stringContaining("admin token") })
      }
      expect((yield* list(bearer(TEST_ADMIN_TOKEN))).status).toBe(200)
      // 401 comes before the body is looked at.
      const unauthenticatedBadBody = yield* request(`${adminUrl}/api/v1/destinations`, { method: "POST", body: "{" })
      expect(unauthenticatedBadBody.status).toBe(401)

      // What stays public: the system info (no secrets in it) and the UI.
      const info = yield* request(`${adminUrl}/api/v1/info`, {})
      expect(info.status).toBe(200)
      expect(JSON.stringify(info.json)).not.toContain(TEST_ADMIN_TOKEN)
      expect((yield* request(`${adminUrl}/`, {})).status).not.toBe(401)

      // The typed clients see the 401 as the API's Unauthorized error.
      const anonymous = yield* apiClient(adminUrl)
      const refused = yield* Effect.flip(anonymous.destinations.list())
      expect(refused._tag).toBe("Unauthorized")
      const producerClient = yield* apiClient(adminUrl, TEST_PRODUCER_TOKEN)
      // Both success statuses decode: 201 stored, 200 already there.
      const typed = { payload: { id: "typed-client-1", type: "ingest.auth", data: {} }, headers: {} }
      expect(yield* producerClient.ingest.publish(typed)).toEqual({ events: [{ id: "typed-client-1", duplicate: false }] })
      expect(yield* producerClient.ingest.publish(typed)).toEqual({ events: [{ id: "typed-client-1", duplicate: true }] })
    })
  )

  it.scoped("answers 413 for a body over SLUICE_MAX_INGEST_BYTES and an event over SLUICE_MAX_EVENT_BYTES, storing nothing", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const databaseUrl = yield* throwawayDatabase
      const { adminUrl } = yield* startBroker({
        natsUrl: nats.url,
        databaseUrl,
        settings: { maxIngestBytes: 64 * 1024, maxEventBytes: 16 * 1024 }
      })

      const big = yield* ingest(adminUrl, { type: "ingest.oversize", data: "x".repeat(100 * 1024) })
      expect(big.status).toBe(413)
      expect(big.json).toMatchObject({ _tag: "PayloadTooLarge", maxBytes: 64 * 1024 })

      // Without a Content-Length (chunked), the limit holds while the body is read.
      const chunks = Array.from({ length: 20 }, () => new TextEncoder().encode(`"${"y".repeat(8 * 1024)}",`))
      const stream = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(new TextEncoder().encode('{"type":"ingest.oversize","data":['))
          for (const chunk of chunks) controller.enqueue(chunk)
          controller.enqueue(new TextEncoder().encode('""]}'))
          controller.close()
        }
      })
      const chunked = yield* request(`${adminUrl}/api/v1/events`, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer(TEST_PRODUCER_TOKEN) },
        body: stream,
        duplex: "half"
      })
      expect(chunked.status).toBe(413)
      expect(chunked.json).toMatchObject({ _tag: "PayloadTooLarge", maxBytes: 64 * 1024 })

      const batch = yield* ingest(adminUrl, {
        events: [
          { type: "ingest.oversize", data: "small" },
          { type: "ingest.oversize", data: "z".repeat(20 * 1024) }
        ]
      })
      expect(batch.status).toBe(413)
      expect(batch.json).toMatchObject({ maxBytes: 16 * 1024, message: expect.stringContaining("event 1") })

      // Its JSON fits the limit, but JetStream counts the headers too: refused here, not by JetStream.
      const nearLimit = { id: "near-limit", type: "ingest.oversize", occurredAt: "2026-11-23T09:00:00Z", data: "" }
      const fill = "n".repeat(16 * 1024 - 10 - Buffer.byteLength(JSON.stringify(nearLimit)))
      const withHeaders = yield* ingest(adminUrl, { ...nearLimit, data: fill })
      expect(withHeaders.status).toBe(413)
      expect(withHeaders.json).toMatchObject({ maxBytes: 16 * 1024, message: expect.stringContaining("with its headers") })
      expect(yield* storedOfType(nats.url, "ingest.oversize")).toBe(0)
    })
  )

  it.scoped("a producer reads its event's state per destination: queued while owed, completed once delivered", () =>
    Effect.gen(function* () {
      const { adminUrl, client } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "status-http", url: receiver.url, subscriptions: ["ingest.status.http"] } })
      // Paused, the destination owes the event a delivery it cannot attempt yet.
      yield* client.destinations.pause({ path: { id: "status-http" } })
      const [published] = idsIn(yield* ingest(adminUrl, { type: "ingest.status.http", data: { secret: "payload" } }))
      const id = published!.id

      const queued = yield* waitForEffect(
        statusOf(adminUrl, id).pipe(Effect.map((answer) => (answer.status === 200 ? answer : undefined))),
        { description: `status of ${id} answered` }
      )
      expect(queued.json).toEqual({
        id,
        receivedAt: timestamp,
        settled: false,
        deliveries: [{ destinationId: "status-http", state: "queued", attempts: 0, updatedAt: null }]
      })

      yield* client.destinations.resume({ path: { id: "status-http" } })
      const completed = yield* waitForEffect(
        statusOf(adminUrl, id).pipe(Effect.map((answer) => ((answer.json as { settled?: boolean }).settled ? answer : undefined))),
        // (After a resume the actor's first pull can take up to its 5 s pull expiry.)
        { description: `status of ${id} settled`, timeoutMs: 20_000 }
      )
      expect(completed.status).toBe(200)
      expect(completed.json).toEqual({
        id,
        receivedAt: (queued.json as { receivedAt: string }).receivedAt,
        settled: true,
        deliveries: [{ destinationId: "status-http", state: "completed", attempts: 1, updatedAt: timestamp }]
      })
      expect(receiver.received().map((r) => r.headers["webhook-id"])).toEqual([id])

      // An event no destination subscribes to has nothing owed: settled from the start.
      const [unrouted] = idsIn(yield* ingest(adminUrl, { type: "ingest.status.unrouted", data: {} }))
      const alone = yield* waitForEffect(
        statusOf(adminUrl, unrouted!.id).pipe(Effect.map((answer) => (answer.status === 200 ? answer : undefined))),
        { description: `status of ${unrouted!.id} answered` }
      )
      expect(alone.json).toMatchObject({ id: unrouted!.id, settled: true, deliveries: [] })

      const unknown = yield* statusOf(adminUrl, "never-published")
      expect(unknown.status).toBe(404)
      expect(unknown.json).toMatchObject({ _tag: "NotFound", message: expect.stringContaining("never-published") })

      // The producer token only: the admin token, a wrong one or none is refused.
      for (const headers of [{}, bearer(TEST_ADMIN_TOKEN), bearer("wrong-token-0123456789")]) {
        const refused = yield* statusOf(adminUrl, id, headers)
        expect(refused.status).toBe(401)
        expect(refused.json).toMatchObject({ _tag: "Unauthorized", message: expect.stringContaining("producer token") })
      }
      // …and the producer token still does not open the operator's event detail.
      expect((yield* request(`${adminUrl}/api/v1/events/${id}`, { headers: bearer(TEST_PRODUCER_TOKEN) })).status).toBe(401)
    })
  )

  it.scoped("the SDK's status reads an event's state with the producer token, settled once delivered", () =>
    Effect.gen(function* () {
      const { adminUrl, client, natsUrl, producerToken } = yield* brokerOnFixture
      expect(producerToken).toBe(TEST_PRODUCER_TOKEN)
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "status-sink", url: receiver.url, subscriptions: ["ingest.status"] } })
      const sluice = yield* Effect.acquireRelease(
        Effect.promise(() => connect({ servers: natsUrl, adminUrl, producerToken })),
        (c) => Effect.promise(() => c.close())
      )
      const { id } = yield* Effect.promise(() => sluice.publish({ type: "ingest.status", data: { n: 1 } }))
      const status = yield* waitForEffect(
        Effect.tryPromise({ try: () => sluice.status(id), catch: (e) => e }).pipe(Effect.map((s) => (s.settled ? s : undefined))),
        { description: `status of ${id} settled` }
      )
      expect(status).toEqual({
        id,
        receivedAt: timestamp,
        settled: true,
        deliveries: [{ destinationId: "status-sink", state: "completed", attempts: 1, updatedAt: timestamp }]
      })

      const unknown = yield* Effect.flip(Effect.tryPromise({ try: () => sluice.status("never-published"), catch: (e) => e }))
      expect(unknown).toMatchObject({ _tag: "EventNotFound", eventId: "never-published" })

      // The Effect face, without the broker's address, and with the admin token instead of the producer's.
      const withoutAdmin = yield* Sluice.fromConnection(yield* natsConnection(natsUrl))
      const notConfigured = yield* Effect.flip(withoutAdmin.status(id))
      expect(notConfigured).toMatchObject({ _tag: "AdminApiNotConfigured", message: expect.stringContaining("producerToken") })
      const withAdminToken = yield* Sluice.fromConnection(yield* natsConnection(natsUrl), { adminUrl, producerToken: TEST_ADMIN_TOKEN })
      const refused = yield* Effect.flip(withAdminToken.status(id))
      expect(refused).toMatchObject({ _tag: "StatusUnavailable", reason: expect.stringContaining("401") })
    })
  )
})

/** A plain NATS connection for the rest of the scope. */
const natsConnection = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(() => connectNats({ servers: url })),
    (nc) => Effect.promise(() => nc.close())
  )

describe("HTTP ingest while NATS is away", () => {
  it.scopedLive(
    "answers 503 with Retry-After, and nothing it refused is stored once NATS is back",
    () =>
      Effect.gen(function* () {
        const nats = yield* tempNatsServer
        const databaseUrl = yield* throwawayDatabase
        const { adminUrl, client } = yield* startBroker({ natsUrl: nats.url, databaseUrl })
        expect((yield* ingest(adminUrl, { type: "ingest.before", data: {} })).status).toBe(201)

        yield* nats.stop
        const single = yield* ingest(adminUrl, { id: "refused-single", type: "ingest.outage", data: {} })
        expect(single.status).toBe(503)
        expect(single.headers.get("retry-after")).toBe("5")
        // ("NATS is unreachable" once the broker saw the disconnect, a missing acknowledgement just before.)
        expect(single.json).toMatchObject({ _tag: "Unavailable" })
        const batch = yield* ingest(adminUrl, {
          events: [
            { id: "refused-batch-0", type: "ingest.outage", data: {} },
            { id: "refused-batch-1", type: "ingest.outage", data: {} }
          ]
        })
        expect(batch.status).toBe(503)
        expect(batch.headers.get("retry-after")).toBe("5")

        yield* nats.restart
        // Once the broker is reconnected, ingest works again…
        const after = yield* waitForEffect(
          ingest(adminUrl, { id: "after-outage", type: "ingest.after", data: {} }).pipe(
            Effect.map((answer) => (answer.status === 201 ? answer : undefined))
          ),
          { description: "ingest accepted after NATS restarted", timeoutMs: 20_000 }
        )
        expect(idsIn(after)).toEqual([{ id: "after-outage", duplicate: false }])
        yield* waitForEffect(client.events.get({ path: { id: "after-outage" } }), { description: "after-outage in history" })
        // …and what it refused was never stored, in JetStream or in the history.
        expect(yield* storedOfType(nats.url, "ingest.outage")).toBe(0)
        for (const id of ["refused-single", "refused-batch-0", "refused-batch-1"]) {
          const missing = yield* Effect.either(client.events.get({ path: { id } }))
          expect(Either.isLeft(missing) && missing.left._tag).toBe("NotFound")
        }
      }),
    90_000
  )
})

describe("generated tokens", () => {
  it.scopedLive("are written once into the data directory with mode 0600 and reused at the next start", () =>
    Effect.gen(function* () {
      const nats = yield* tempNatsServer
      const databaseUrl = yield* throwawayDatabase
      const dataDir = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-tokens-"))),
        (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
      )
      const settings = { dataDir, adminToken: Option.none(), producerToken: Option.none() }
      const first = yield* Effect.scoped(
        startBroker({ natsUrl: nats.url, databaseUrl, settings }).pipe(
          Effect.map((b) => ({ admin: b.adminToken, producer: b.producerToken }))
        )
      )
      const adminFile = join(dataDir, "admin-token")
      expect((yield* Effect.promise(() => readFile(adminFile, "utf8"))).trim()).toBe(first.admin)
      expect((yield* Effect.promise(() => stat(adminFile))).mode & 0o777).toBe(0o600)
      expect((yield* Effect.promise(() => stat(join(dataDir, "producer-token")))).mode & 0o777).toBe(0o600)
      expect(first.admin).not.toBe(first.producer)

      const second = yield* startBroker({ natsUrl: nats.url, databaseUrl, settings })
      expect(second.adminToken).toBe(first.admin)
      expect(second.producerToken).toBe(first.producer)
      expect(second.adminToken.length).toBeGreaterThanOrEqual(32)
      expect((yield* ingest(second.adminUrl, { type: "ingest.generated", data: {} }, bearer(second.producerToken))).status).toBe(201)
    })
  )
})
