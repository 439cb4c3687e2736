/**
 * Signatures a receiver can check with any Standard Webhooks library: deliveries from a real
 * broker (single events from the SDK and from HTTP ingest, batched transactions) verify with
 * an independent verifier written from the specification (`helpers/standardWebhooks.ts`);
 * a changed body, timestamp or id does not; after a rotation the new secret verifies and the
 * old one does not. And the secrets behind them are encrypted in the history database:
 * sealed on every write, plain rows of older versions still working and sealed on their next
 * write, and a broker with another key saying so instead of signing with garbage.
 */
import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, Option, Redacted, Scope } from "effect"
import { producer, startBroker, TEST_PRODUCER_TOKEN } from "../helpers/broker.js"
import { query } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import { throwawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { Webhook, WebhookVerificationError } from "../helpers/standardWebhooks.js"

/** What a receiver's `Webhook.verify` says of a request: the payload, or the error's message. */
const verified = (secret: string, request: Pick<ReceivedRequest, "body" | "headers">, now?: Date) =>
  Effect.promise(() =>
    new Webhook(secret).verify(request.body, request.headers as Record<string, string>, now).then(
      (payload) => ({ ok: true as const, payload }),
      (error: unknown) => {
        if (!(error instanceof WebhookVerificationError)) throw error
        return { ok: false as const, reason: error.message }
      }
    )
  )

/** The row of a destination as the history database holds it. */
const storedSecret = (databaseUrl: string, id: string) =>
  query(databaseUrl, (sql) => sql<Array<{ secret: string }>>`select secret from destinations where id = ${id}`).pipe(
    Effect.map((rows) => rows[0]!.secret)
  )

describe("the Standard Webhooks verifier of the tests", () => {
  // The example of the specification's reference implementations.
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
  const headers = {
    "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
    "webhook-timestamp": "1614265330",
    "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
  }
  const body = '{"test": 2432232314}'
  const sentAt = new Date(1614265330 * 1000)
  const request = { body, headers }

  it.effect("accepts the specification's example and refuses it changed, late, early or unsigned", () =>
      Effect.gen(function* () {
        expect(yield* verified(secret, request, sentAt)).toEqual({ ok: true, payload: { test: 2432232314 } })
        expect(yield* verified(secret, request, new Date(sentAt.getTime() + 299_000))).toMatchObject({ ok: true })
        expect(yield* verified(secret, request, new Date(sentAt.getTime() + 301_000))).toEqual({ ok: false, reason: "Message timestamp too old" })
        expect(yield* verified(secret, request, new Date(sentAt.getTime() - 301_000))).toEqual({ ok: false, reason: "Message timestamp too new" })
        expect(yield* verified(secret, { body: '{"test": 2432232315}', headers }, sentAt)).toEqual({
          ok: false,
          reason: "No matching signature found"
        })
        expect(yield* verified("whsec_" + Buffer.from("another key of 24 bytes!").toString("base64"), request, sentAt)).toMatchObject({ ok: false })
        const { "webhook-signature": _, ...unsigned } = headers
        expect(yield* verified(secret, { body, headers: unsigned }, sentAt)).toEqual({ ok: false, reason: "Missing required headers" })
        // Several signatures (a sender mid-rotation): one match is enough; other versions are ignored.
        const several = { ...headers, "webhook-signature": `v1,Zm9v v1a,${headers["webhook-signature"].slice(3)} ${headers["webhook-signature"]}` }
        expect(yield* verified(secret, { body, headers: several }, sentAt)).toMatchObject({ ok: true })
        const onlyOtherVersions = { ...headers, "webhook-signature": `v2,${headers["webhook-signature"].slice(3)}` }
        expect(yield* verified(secret, { body, headers: onlyOtherVersions }, sentAt)).toMatchObject({ ok: false })
      })
  )
})

layer(NatsFixture.layer, { timeout: 120_000, excludeTestServices: true })("signatures and secrets at rest", (it) => {
  const setup = Effect.gen(function* () {
    const nats = yield* NatsFixture
    const databaseUrl = yield* throwawayDatabase
    return { natsUrl: nats.url, databaseUrl }
  })

  it.scoped("deliveries verify with a Standard Webhooks verifier; tampering does not; a rotated secret takes over", () =>
    Effect.gen(function* () {
      const { databaseUrl, natsUrl } = yield* setup
      const { adminUrl, client } = yield* startBroker({ natsUrl, databaseUrl })
      const sluice = yield* producer(natsUrl)
      const receiver = yield* scopedReceiver()
      const created = yield* client.destinations.create({
        payload: { id: "signed", url: `${receiver.url}/hooks`, subscriptions: ["signed.>"] }
      })

      const fromSdk = yield* sluice.publish({ type: "signed.sdk", key: "k1", data: { total: "12.50 €", emoji: "🧾", nested: [1, { a: null }] } })
      const ingested = yield* Effect.promise(() =>
        fetch(`${adminUrl}/api/v1/events`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${TEST_PRODUCER_TOKEN}` },
          body: JSON.stringify({ type: "signed.ingest", data: { text: "line\nbreak \"quoted\" \\ slash" } })
        }).then((response) => response.json() as Promise<{ events: Array<{ id: string }> }>)
      )
      const received = yield* Effect.promise(() => receiver.waitForCount(2))
      expect(received.map((r) => r.headers["webhook-id"])).toEqual([fromSdk.id, ingested.events[0]!.id])

      for (const request of received) {
        const result = yield* verified(created.secret, request)
        expect(result.ok, request.body).toBe(true)
        expect(result).toMatchObject({ payload: { id: request.headers["webhook-id"] } })
        expect(Math.abs(Number(request.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(60)
      }
      const [first] = received
      const tampered: ReadonlyArray<Pick<ReceivedRequest, "body" | "headers">> = [
        { ...first!, body: first!.body.replace("12.50", "12.51") },
        { ...first!, body: `${first!.body} ` },
        { ...first!, headers: { ...first!.headers, "webhook-timestamp": String(Number(first!.headers["webhook-timestamp"]) + 1) } },
        { ...first!, headers: { ...first!.headers, "webhook-id": `${String(first!.headers["webhook-id"])}x` } }
      ]
      for (const request of tampered) {
        expect(yield* verified(created.secret, request)).toEqual({ ok: false, reason: "No matching signature found" })
      }
      // A replay of a genuine request an hour later is refused for its timestamp.
      expect(yield* verified(created.secret, first!, new Date(Date.now() + 3_600_000))).toEqual({ ok: false, reason: "Message timestamp too old" })

      const { secret: rotated } = yield* client.destinations.rotateSecret({ path: { id: "signed" } })
      yield* sluice.publish({ type: "signed.after-rotation", data: { n: 3 } })
      const [, , third] = yield* Effect.promise(() => receiver.waitForCount(3))
      expect(yield* verified(rotated, third!)).toMatchObject({ ok: true, payload: { type: "signed.after-rotation" } })
      expect(yield* verified(created.secret, third!)).toEqual({ ok: false, reason: "No matching signature found" })
    })
  )

  it.scoped("batched transactions verify too", () =>
    Effect.gen(function* () {
      const { databaseUrl, natsUrl } = yield* setup
      const { client } = yield* startBroker({ natsUrl, databaseUrl })
      const sluice = yield* producer(natsUrl)
      const receiver = yield* scopedReceiver()
      const created = yield* client.destinations.create({
        payload: { id: "signed-batch", url: `${receiver.url}/app`, subscriptions: ["signedbatch.>"], batch: { maxEvents: 5, maxWaitMs: 50 } }
      })
      yield* sluice.publishMany(Array.from({ length: 5 }, (_, i) => ({ type: "signedbatch.item", data: { i } })))
      const requests = yield* Effect.promise(() => receiver.waitForCount(1))
      for (const request of requests) {
        expect(request.method).toBe("PUT")
        const result = yield* verified(created.secret, request)
        expect(result).toMatchObject({ ok: true, payload: { txnId: expect.any(Number) } })
        expect(request.headers["webhook-id"]).toMatch(/^txn_signed-batch_\d+$/)
      }
    })
  )

  it.scoped("secrets are sealed in the database; plain rows of older versions work and are sealed on their next write", () =>
    Effect.gen(function* () {
      const { databaseUrl, natsUrl } = yield* setup
      const receiver = yield* scopedReceiver()
      const first = yield* Scope.make()
      const before = yield* startBroker({ natsUrl, databaseUrl }).pipe(Scope.extend(first))
      const created = yield* before.client.destinations.create({
        payload: { id: "sealed", url: `${receiver.url}/hooks`, subscriptions: ["sealed.>"] }
      })
      const stored = yield* storedSecret(databaseUrl, "sealed")
      expect(stored).toMatch(/^sealed:v1:[0-9a-f]{8}:[A-Za-z0-9+/]+=*$/)
      expect(stored).not.toContain(created.secret.slice("whsec_".length, "whsec_".length + 12))
      const { secret: rotated } = yield* before.client.destinations.rotateSecret({ path: { id: "sealed" } })
      const afterRotation = yield* storedSecret(databaseUrl, "sealed")
      expect(afterRotation).toMatch(/^sealed:v1:/)
      expect(afterRotation).not.toBe(stored)
      expect(afterRotation).not.toContain(rotated.slice("whsec_".length, "whsec_".length + 12))
      yield* Scope.close(first, Exit.void)

      // As a version before encryption left it: the secret in plain text.
      const plain = "whsec_" + Buffer.from("a secret from before encryption!").toString("base64")
      yield* query(databaseUrl, (sql) => sql`update destinations set secret = ${plain} where id = 'sealed'`)
      const { client } = yield* startBroker({ natsUrl, databaseUrl })
      const sluice = yield* producer(natsUrl)
      yield* sluice.publish({ type: "sealed.one", data: {} })
      const [one] = yield* Effect.promise(() => receiver.waitForCount(1))
      expect(yield* verified(plain, one!)).toMatchObject({ ok: true })
      expect(yield* storedSecret(databaseUrl, "sealed")).toBe(plain)

      // Any write of the destination seals it; signing goes on with the same secret.
      yield* client.destinations.update({ path: { id: "sealed" }, payload: { name: "renamed" } })
      const resealed = yield* storedSecret(databaseUrl, "sealed")
      expect(resealed).toMatch(/^sealed:v1:/)
      yield* sluice.publish({ type: "sealed.two", data: {} })
      const [, two] = yield* Effect.promise(() => receiver.waitForCount(2))
      expect(yield* verified(plain, two!)).toMatchObject({ ok: true })
    })
  )

  it.scoped("a broker with another SLUICE_SECRET_KEY on the same database says so", () =>
    Effect.gen(function* () {
      const { databaseUrl, natsUrl } = yield* setup
      const first = yield* Scope.make()
      const one = yield* startBroker({ natsUrl, databaseUrl }).pipe(Scope.extend(first))
      yield* one.client.destinations.create({ payload: { id: "other-key", url: "http://127.0.0.1:9/", subscriptions: ["otherkey.never"] } })
      yield* Scope.close(first, Exit.void)

      const { client } = yield* startBroker({
        natsUrl,
        databaseUrl,
        settings: { secretKey: Option.some(Redacted.make(Buffer.alloc(32, 7).toString("base64"))) }
      })
      const refused = yield* Effect.flip(client.destinations.get({ path: { id: "other-key" } }))
      expect(refused).toMatchObject({ _tag: "Unavailable" })
      expect((refused as { message: string }).message).toMatch(
        /signing secret of destination other-key cannot be read: it was sealed with key [0-9a-f]{8}, and this process has key [0-9a-f]{8} .*SLUICE_SECRET_KEY/
      )
    })
  )
})
