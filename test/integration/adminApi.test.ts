/**
 * The read side of the admin API against real parts (nats-server, Postgres, HTTP receivers),
 * through the typed client derived from the API definition: the event list with its filters
 * and cursor pages, a destination's health timeline and stats, the audit log, secret
 * rotation, and the 400/404 answers for bad input and unknown ids.
 */
import { expect, layer } from "@effect/vitest"
import { Signer } from "@sluice/broker"
import type { History } from "@sluice/protocol"
import { Effect } from "effect"
import type { AdminClient } from "../helpers/broker.js"
import { brokerOnFixture } from "../helpers/broker.js"
import { consumerInfo } from "../helpers/inspect.js"
import { NatsFixture } from "../helpers/nats.js"
import type { ReceivedRequest } from "../helpers/receiver.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

/** Ids of the events a query lists on its first page. */
const listed = (client: AdminClient, query: History.EventQuery) =>
  client.events.list({ urlParams: query }).pipe(Effect.map((page) => page.items.map((e) => e.id)))

/** The ids on every page of a list, following the cursors from the first page. */
const allPages = <E>(
  next: (cursor: string | undefined) => Effect.Effect<{ readonly items: ReadonlyArray<{ readonly id: string }>; readonly nextCursor: string | null }, E>
) =>
  Effect.gen(function* () {
    const pages: Array<ReadonlyArray<string>> = []
    let cursor: string | undefined
    do {
      const page = yield* next(cursor)
      pages.push(page.items.map((item) => item.id))
      cursor = page.nextCursor ?? undefined
    } while (cursor !== undefined)
    return pages
  })

const eventPages = (client: AdminClient, query: History.EventQuery) =>
  allPages((cursor) => client.events.list({ urlParams: { ...query, cursor } }))

/** A GET outside the typed client, which would refuse to send what these requests send. */
const rawGet = (broker: { readonly adminUrl: string; readonly adminToken: string }, path: string) =>
  Effect.promise(async () => {
    const response = await fetch(`${broker.adminUrl}/api/v1${path}`, { headers: { authorization: `Bearer ${broker.adminToken}` } })
    return { status: response.status, body: (await response.json()) as { _tag: string; issues?: Array<{ path: Array<string> }> } }
  })

/** Whether the request is signed with `secret` (Standard Webhooks, possibly among other signatures). */
const signedWith = (request: ReceivedRequest, secret: string) =>
  String(request.headers["webhook-signature"])
    .split(" ")
    .includes(
      Signer.sign({
        secret,
        id: String(request.headers["webhook-id"]),
        timestamp: Number(request.headers["webhook-timestamp"]),
        body: request.body
      })
    )

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("admin API read side", (it) => {
  it.scoped("lists events by type, key, destination, state and time, newest first, in pages without gaps or duplicates", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const shop = yield* scopedReceiver()
      const ledger = yield* scopedReceiver((request) => ({ status: (request.json as { data: { bad?: boolean } }).data.bad ? 422 : 200 }))
      yield* client.destinations.create({ payload: { id: "shop", url: shop.url, subscriptions: ["store.order.*"] } })
      yield* client.destinations.create({ payload: { id: "ledger", url: ledger.url, subscriptions: ["store.>"] } })

      const inputs = [
        { type: "store.order.created", key: "o1", data: {} },
        { type: "store.order.created", key: "o2", data: {} },
        { type: "store.order.paid", key: "o1", data: {} },
        { type: "store.invoice.sent", key: "i1", data: { bad: true } },
        { type: "store.order.created", key: "o3", data: {} },
        { type: "store.invoice.sent", key: "i2", data: {} },
        { type: "store.order.paid", key: "o2", data: {} }
      ]
      const ids: Array<string> = []
      for (const input of inputs) ids.push((yield* sluice.publish(input)).id)
      const newestFirst = (pick: (input: (typeof inputs)[number]) => boolean) =>
        ids.filter((_, i) => pick(inputs[i]!)).reverse()
      const orders = newestFirst((e) => e.type.startsWith("store.order."))

      // Every delivery settled: completed everywhere, but the bad invoice dead at the ledger.
      const everything = yield* waitForEffect(
        client.events.list({ urlParams: { type: "store.>" } }).pipe(
          Effect.map((page) =>
            page.items.length === inputs.length &&
            page.items.every((e) => e.deliveries.every((d) => d.state === "completed" || d.state === "dead"))
              ? page.items
              : undefined
          )
        ),
        { description: "all events delivered and recorded" }
      )
      expect(everything.map((e) => e.id)).toEqual(newestFirst(() => true))
      const invoice = everything.find((e) => e.key === "i1")!
      expect(invoice.deliveries).toMatchObject([{ destinationId: "ledger", state: "dead", attempts: 1 }])
      expect(everything.find((e) => e.key === "o3")!.deliveries.map((d) => [d.destinationId, d.state])).toEqual([
        ["ledger", "completed"],
        ["shop", "completed"]
      ])

      expect(yield* listed(client, { type: "store.order.created" })).toEqual(newestFirst((e) => e.type === "store.order.created"))
      expect(yield* listed(client, { type: "store.order.*" })).toEqual(orders)
      expect(yield* listed(client, { type: "store.*" })).toEqual([])
      expect(yield* listed(client, { type: "*.invoice.>" })).toEqual(newestFirst((e) => e.type === "store.invoice.sent"))
      expect(yield* listed(client, { key: "o1" })).toEqual(newestFirst((e) => e.key === "o1"))
      expect(yield* listed(client, { destination: "shop" })).toEqual(orders)
      expect(yield* listed(client, { destination: "ledger" })).toEqual(newestFirst(() => true))
      expect(yield* listed(client, { state: "dead" })).toEqual([invoice.id])
      expect(yield* listed(client, { state: "dead", destination: "shop" })).toEqual([])
      expect(yield* listed(client, { state: "completed", destination: "shop" })).toEqual(orders)

      const oldestFirst = [...everything].reverse()
      const since = oldestFirst[2]!.receivedAt
      const until = oldestFirst[5]!.receivedAt
      const inRange = everything
        .filter((e) => Date.parse(e.receivedAt) >= Date.parse(since) && Date.parse(e.receivedAt) < Date.parse(until))
        .map((e) => e.id)
      expect(inRange.length).toBeGreaterThan(0)
      expect(yield* listed(client, { type: "store.>", since, until })).toEqual(inRange)

      const pages = yield* eventPages(client, { type: "store.>", limit: 2 })
      expect(pages.map((page) => page.length)).toEqual([2, 2, 2, 1])
      expect(pages.flat()).toEqual(newestFirst(() => true))
      const filtered = yield* eventPages(client, { destination: "shop", limit: 3 })
      expect(filtered.flat()).toEqual(orders)
    })
  )

  it.scoped("answers 400 naming the field for a bad state, limit or cursor, and 404 for unknown ids", () =>
    Effect.gen(function* () {
      const broker = yield* brokerOnFixture
      const { client } = broker
      for (const [path, field] of [
        ["/events?state=lost", "state"],
        ["/events?limit=0", "limit"],
        ["/events?limit=many", "limit"],
        ["/events?since=yesterday", "since"],
        ["/events?type=order..created", "type"],
        ["/audit?limit=501", "limit"]
      ] as const) {
        const answer = yield* rawGet(broker, path)
        expect(answer.status, path).toBe(400)
        expect(answer.body.issues?.[0]?.path, path).toEqual([field])
      }
      for (const path of ["/events?cursor=bm90LWEtY3Vyc29y", "/audit?cursor=garbage"]) {
        const answer = yield* rawGet(broker, path)
        expect(answer.status, path).toBe(400)
        expect(answer.body, path).toMatchObject({ _tag: "InvalidRequest", field: "cursor" })
      }
      const badCursor = yield* Effect.flip(client.events.list({ urlParams: { cursor: "garbage" } }))
      expect(badCursor).toMatchObject({ _tag: "InvalidRequest", field: "cursor" })

      const unknown = { path: { id: "nope" } }
      const notFound: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string }>> = [
        client.destinations.health(unknown),
        client.destinations.stats(unknown),
        client.destinations.rotateSecret(unknown),
        client.destinations.replay({ ...unknown, payload: { since: "2026-01-01T00:00:00Z", states: ["dead"] } }),
        client.destinations.replayStream({ ...unknown, payload: { since: "2026-01-01T00:00:00Z" } }),
        client.events.replay({ path: { id: "no-such-event" }, payload: { destinationId: "nope" } })
      ]
      for (const request of notFound) expect((yield* Effect.flip(request))._tag).toBe("NotFound")
    })
  )

  it.scoped("stats show the backlog while paused, then latency and throughput; the health timeline shows pause and resume", () =>
    Effect.gen(function* () {
      const { client, sluice, natsUrl } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver(() => ({ status: 200, delayMs: 20 }))
      yield* client.destinations.create({ payload: { id: "metered", url: receiver.url, subscriptions: ["meter.>"] } })
      const stats = client.destinations.stats({ path: { id: "metered" } })
      const idle = yield* stats
      expect(idle).toMatchObject({ destinationId: "metered", backlog: { pending: 0, held: 0 } })
      expect(idle.latency.map((w) => [w.window, w.count, w.p50Ms])).toEqual([
        ["5m", 0, null],
        ["1h", 0, null],
        ["24h", 0, null]
      ])
      expect(idle.throughput).toHaveLength(60)
      expect(yield* client.destinations.health({ path: { id: "metered" } })).toEqual([])

      yield* client.destinations.pause({ path: { id: "metered" } })
      // Paused, the actor stops pulling once its last pull request ends (within its 5 s expiry).
      yield* waitForEffect(consumerInfo(natsUrl, "metered").pipe(Effect.map((info) => info.num_waiting === 0)), {
        description: "no pull request open for the paused destination"
      })
      for (let i = 0; i < 4; i++) yield* sluice.publish({ type: "meter.read", key: `m${i}`, data: { i } })
      const waiting = yield* waitForEffect(
        stats.pipe(Effect.map((s) => (s.backlog.pending === 4 ? s : undefined))),
        { description: "four events waiting in JetStream" }
      )
      expect(waiting.backlog.held).toBe(0)
      expect(receiver.received()).toHaveLength(0)
      const paused = yield* waitForEffect(
        client.destinations.health({ path: { id: "metered" } }).pipe(Effect.map((t) => (t.length === 1 ? t : undefined))),
        { description: "the pause in the health timeline" }
      )
      expect(paused[0]).toMatchObject({ from: "active", to: "paused", reason: "paused by admin" })

      yield* client.destinations.resume({ path: { id: "metered" } })
      // Each event is acknowledged once its attempt is recorded: the backlog empties just after.
      const delivered = yield* waitForEffect(
        stats.pipe(
          Effect.map((s) =>
            s.states.completed === 4 && s.latency[0]!.count === 4 && s.backlog.pending + s.backlog.held === 0 ? s : undefined
          )
        ),
        { description: "four deliveries completed, recorded and acknowledged" }
      )
      expect(delivered.backlog).toEqual({ pending: 0, held: 0 })
      for (const window of delivered.latency) {
        expect(window.count).toBe(4)
        expect(window.p50Ms).toBeGreaterThanOrEqual(20)
        expect(window.p99Ms).toBeGreaterThanOrEqual(window.p50Ms!)
      }
      expect(delivered.throughput.reduce((n, p) => n + p.succeeded, 0)).toBe(4)
      expect(delivered.throughput.reduce((n, p) => n + p.failed, 0)).toBe(0)
      const minutes = delivered.throughput.map((p) => Date.parse(p.at))
      expect(minutes.slice(1).every((at, i) => at - minutes[i]! === 60_000)).toBe(true)
      expect(Date.now() - minutes[59]!).toBeLessThan(60_000 + 1_000)

      const timeline = yield* waitForEffect(
        client.destinations.health({ path: { id: "metered" } }).pipe(Effect.map((t) => (t.length === 2 ? t : undefined))),
        { description: "pause and resume in the health timeline" }
      )
      expect(timeline.map((t) => `${t.from}→${t.to}`)).toEqual(["paused→active", "active→paused"])
    })
  )

  it.scoped("rotating the secret signs the next delivery with the new one; the audit log shows create, pause and rotate", () =>
    Effect.gen(function* () {
      const { client, sluice } = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      const created = yield* client.destinations.create({ payload: { id: "rotating", url: receiver.url, subscriptions: ["key.>"] } })
      yield* sluice.publish({ type: "key.used", data: { n: 1 } })
      const [first] = yield* Effect.promise(() => receiver.waitForCount(1))
      expect(signedWith(first!, created.secret)).toBe(true)

      const { secret } = yield* client.destinations.rotateSecret({ path: { id: "rotating" } })
      expect(secret).toMatch(/^whsec_/)
      expect(secret).not.toBe(created.secret)
      expect((yield* client.destinations.get({ path: { id: "rotating" } })).secretHint).toBe(`${secret.slice(0, 10)}…`)
      yield* sluice.publish({ type: "key.used", data: { n: 2 } })
      const [, second] = yield* Effect.promise(() => receiver.waitForCount(2))
      expect(signedWith(second!, secret)).toBe(true)
      expect(signedWith(second!, created.secret)).toBe(false)

      yield* client.destinations.pause({ path: { id: "rotating" } })
      const audited = yield* waitForEffect(
        client.audit.list({ urlParams: { destination: "rotating" } }).pipe(
          Effect.map((page) => (page.items.length === 3 ? page.items : undefined))
        ),
        { description: "three audit entries" }
      )
      expect(audited.map((a) => [a.action, a.actor, a.destinationId])).toEqual([
        ["destination.pause", "admin", "rotating"],
        ["destination.secret_rotated", "admin", "rotating"],
        ["destination.created", "admin", "rotating"]
      ])
      const written = JSON.stringify(audited)
      expect(written).not.toContain(secret)
      expect(written).not.toContain(created.secret)

      const pages = yield* allPages((cursor) => client.audit.list({ urlParams: { destination: "rotating", limit: 2, cursor } }))
      expect(pages).toEqual([audited.slice(0, 2).map((a) => a.id), [audited[2]!.id]])
      const everyone = yield* client.audit.list({ urlParams: {} })
      expect(everyone.items.map((a) => a.id)).toEqual(expect.arrayContaining(audited.map((a) => a.id)))
    })
  )
})
