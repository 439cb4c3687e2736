/**
 * What operations tooling reads from the admin address: liveness and readiness probes
 * (no token), Prometheus metrics (admin token) and the Server-Sent Events stream of health
 * changes and delivery outcomes (admin token as `?token=`).
 */
import { expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { brokerOnFixture, startBroker } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { databaseBehindProxy } from "../helpers/tcpProxy.js"
import { waitForEffect } from "../helpers/waitFor.js"

const get = (url: string, headers: Record<string, string> = {}) =>
  Effect.promise(async () => {
    const response = await fetch(url, { headers })
    return { status: response.status, type: response.headers.get("content-type"), text: await response.text() }
  })

interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

/** The samples of a Prometheus text exposition. */
const parseExposition = (text: string): ReadonlyArray<Sample> =>
  text
    .split("\n")
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (match === null) throw new Error(`not a sample line: ${line}`)
      const labels: Record<string, string> = {}
      for (const [, name, value] of (match[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[name!] = value!
      return { name: match[1]!, labels, value: Number(match[3]) }
    })

/** The value of the one sample named `name` with (at least) these labels; undefined when there is none. */
const valueOf = (samples: ReadonlyArray<Sample>, name: string, labels: Record<string, string>) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value

/** An open event stream: `until` reads on until the text so far satisfies `done`. */
const openStream = (url: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const abort = new AbortController()
      const response = await fetch(url, { signal: abort.signal })
      const reader = response.body!.getReader()
      const decoder = new TextDecoder()
      let text = ""
      const until = (what: string, done: (text: string) => boolean) =>
        Effect.promise(async () => {
          while (!done(text)) {
            const { value, done: ended } = await reader.read()
            if (ended) throw new Error(`the stream ended before ${what}:\n${text}`)
            text += decoder.decode(value, { stream: true })
          }
          return text
        }).pipe(Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => new Error(`no ${what} within 20 s:\n${text}`) }))
      return { status: response.status, type: response.headers.get("content-type"), until, abort }
    }),
    ({ abort }) => Effect.sync(() => abort.abort())
  )

/** The data of every `event: <name>` frame in an event stream's text, parsed. */
const eventsNamed = (text: string, name: string): ReadonlyArray<Record<string, unknown>> =>
  [...text.matchAll(new RegExp(`^event: ${name}\\ndata: (.*)$`, "gm"))].map((m) => JSON.parse(m[1]!))

layer(NatsFixture.layer, { timeout: 90_000, excludeTestServices: true })("operations endpoints", (it) => {
  it.scoped("liveness and readiness need no token; readiness names the history when the database is unreachable", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const { viaProxy, proxy } = yield* databaseBehindProxy
      const { adminUrl } = yield* startBroker({ natsUrl: nats.url, databaseUrl: viaProxy })

      const live = yield* get(`${adminUrl}/healthz`)
      expect(live.status).toBe(200)
      expect(JSON.parse(live.text)).toEqual({ status: "ok" })

      const ready = yield* get(`${adminUrl}/readyz`)
      expect(ready.status).toBe(200)
      expect(JSON.parse(ready.text)).toEqual({ status: "ok", nats: "ok", history: "ok" })

      proxy.cut()
      const notReady = yield* waitForEffect(
        get(`${adminUrl}/readyz`).pipe(Effect.map((r) => r.status === 503 && r)),
        { description: "/readyz answers 503 while the database is unreachable", timeoutMs: 20_000 }
      )
      const body = JSON.parse(notReady.text)
      expect(body).toMatchObject({ status: "unavailable", nats: "ok" })
      expect(body.history).toMatch(/^down: ./)
      // Still alive: an orchestrator must not restart a broker for its database.
      expect((yield* get(`${adminUrl}/healthz`)).status).toBe(200)

      proxy.restore()
      yield* waitForEffect(get(`${adminUrl}/readyz`).pipe(Effect.map((r) => r.status === 200)), {
        description: "/readyz answers 200 once the database is back",
        timeoutMs: 20_000
      })
    })
  )

  it.scoped("metrics need the admin token and count attempts, retries, final states, backlog and health", () =>
    Effect.gen(function* () {
      const { client, sluice, adminUrl, adminToken } = yield* brokerOnFixture
      expect((yield* get(`${adminUrl}/metrics`)).status).toBe(401)
      expect((yield* get(`${adminUrl}/metrics`, { authorization: "Bearer nope" })).status).toBe(401)
      const scrape = get(`${adminUrl}/metrics`, { authorization: `Bearer ${adminToken}` })

      // 500 once, then 200 for the first three events; later requests hang, so their events stay in the backlog.
      const receiver = yield* scopedReceiver((_request, n) => (n === 1 ? { status: 500 } : n <= 4 ? {} : { hang: true }))
      yield* client.destinations.create({
        payload: {
          id: "metered",
          url: receiver.url,
          subscriptions: ["metered.>"],
          timeoutMs: 60_000,
          retry: { initialMs: 20, maxMs: 100, jitter: 0 }
        }
      })
      for (let i = 0; i < 3; i++) yield* sluice.publish({ type: "metered.created", data: { i } })

      const expected: ReadonlyArray<[string, Record<string, string>, number]> = [
        ["sluice_deliveries_total", { destination: "metered", outcome: "failure" }, 1],
        ["sluice_deliveries_total", { destination: "metered", outcome: "success" }, 3],
        ["sluice_retries_total", { destination: "metered" }, 1],
        ["sluice_deliveries_final_total", { destination: "metered", state: "completed" }, 3],
        ["sluice_delivery_duration_seconds_count", { destination: "metered" }, 4],
        ["sluice_delivery_duration_seconds_bucket", { destination: "metered", le: "+Inf" }, 4],
        ["sluice_backlog", { destination: "metered" }, 0],
        ["sluice_destination_health", { destination: "metered", state: "active" }, 1],
        ["sluice_destination_health", { destination: "metered", state: "down" }, 0]
      ]
      let last = ""
      const delivered = yield* waitForEffect(
        scrape.pipe(
          Effect.map((response) => {
            last = response.text
            const samples = parseExposition(response.text)
            return expected.every(([name, labels, value]) => valueOf(samples, name, labels) === value) && response
          })
        ),
        { description: () => `the metrics of 4 attempts for 3 events, last scraped:\n${last}`, timeoutMs: 20_000 }
      )
      expect(delivered.status).toBe(200)
      expect(delivered.type).toContain("text/plain")
      expect(delivered.text).toContain("# TYPE sluice_deliveries_total counter")
      expect(delivered.text).toContain("# TYPE sluice_delivery_duration_seconds histogram")
      expect(delivered.text).toContain("# TYPE sluice_backlog gauge")
      // prom-client's default process metrics.
      expect(delivered.text).toContain("process_cpu_user_seconds_total")
      expect(valueOf(parseExposition(delivered.text), "sluice_deliveries_total", { outcome: "rejected" })).toBeUndefined()

      // Two events the receiver does not answer wait, unacknowledged; the operator pauses the destination.
      for (let i = 0; i < 2; i++) yield* sluice.publish({ type: "metered.created", data: { i } })
      yield* client.destinations.pause({ path: { id: "metered" } })
      yield* waitForEffect(
        scrape.pipe(
          Effect.map((response) => {
            last = response.text
            const samples = parseExposition(response.text)
            return (
              valueOf(samples, "sluice_backlog", { destination: "metered" }) === 2 &&
              valueOf(samples, "sluice_destination_health", { destination: "metered", state: "paused" }) === 1 &&
              valueOf(samples, "sluice_destination_health", { destination: "metered", state: "active" }) === 0
            )
          })
        ),
        { description: () => `a backlog of 2 on the paused destination, last scraped:\n${last}`, timeoutMs: 20_000 }
      )
    })
  )

  it.scoped("the event stream needs the admin token and pushes delivery outcomes and health changes", () =>
    Effect.gen(function* () {
      const { client, sluice, adminUrl, adminToken } = yield* brokerOnFixture
      for (const query of ["", "?token=nope"]) {
        expect((yield* get(`${adminUrl}/api/v1/stream${query}`)).status).toBe(401)
      }
      const receiver = yield* scopedReceiver()
      yield* client.destinations.create({ payload: { id: "streamed", url: receiver.url, subscriptions: ["streamed.>"] } })

      const stream = yield* openStream(`${adminUrl}/api/v1/stream?token=${encodeURIComponent(adminToken)}`)
      expect(stream.status).toBe(200)
      expect(stream.type).toContain("text/event-stream")
      yield* stream.until("the subscribed comment", (text) => text.includes(": subscribed\n\n"))

      const published = yield* sluice.publish({ type: "streamed.created", data: {} })
      const deliveries = (text: string) =>
        eventsNamed(text, "delivery").filter((fact) => fact.destinationId === "streamed")
      const text = yield* stream.until("a delivery event", (text) => deliveries(text).length > 0)
      expect(deliveries(text)[0]).toMatchObject({
        _tag: "AttemptFinished",
        eventId: published.id,
        destinationId: "streamed",
        attempt: 1,
        outcome: "success",
        statusCode: 200,
        state: "completed"
      })

      yield* client.destinations.pause({ path: { id: "streamed" } })
      const health = (text: string) => eventsNamed(text, "health").filter((fact) => fact.destinationId === "streamed")
      const after = yield* stream.until("a health event", (text) => health(text).length > 0)
      expect(health(after)[0]).toMatchObject({ _tag: "HealthChanged", destinationId: "streamed", from: "active", to: "paused" })
      // Operator actions are the audit log's, not this stream's.
      expect(after).not.toContain("OperatorActed")
    })
  )
})
