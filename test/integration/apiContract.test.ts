/**
 * The admin API definition and the server agree: every endpoint the definition in
 * `@sluice/protocol` declares is served, and what each read endpoint answers decodes with the
 * schema the definition gives it — checked over plain HTTP, not through the derived client,
 * so a route the server forgot or a field it shapes differently shows up here.
 */
import { HttpApi } from "@effect/platform"
import { expect, layer } from "@effect/vitest"
import { AdminApi } from "@sluice/protocol"
import { Effect, Option, Schema } from "effect"
import { brokerOnFixture } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"
import { scopedReceiver } from "../helpers/receiver.js"
import { waitForEffect } from "../helpers/waitFor.js"

interface DeclaredEndpoint {
  readonly name: string
  readonly group: string
  readonly method: string
  readonly path: string
  readonly producer: boolean
  readonly success: Option.Option<Schema.Schema<unknown, unknown>>
}

const declared = (): ReadonlyArray<DeclaredEndpoint> => {
  const all: Array<DeclaredEndpoint> = []
  HttpApi.reflect(AdminApi.AdminApi, {
    onGroup: () => {},
    onEndpoint: ({ endpoint, group, middleware, successes }) => {
      const [status, success] = Array.from(successes).sort(([a], [b]) => a - b)[0]!
      all.push({
        name: endpoint.name,
        group: group.identifier,
        method: endpoint.method,
        path: endpoint.path,
        producer: Array.from(middleware).some((m) => m.key === AdminApi.ProducerAuthorization.key),
        success: status === 204 ? Option.none() : Option.map(success.ast, (ast) => Schema.make(ast))
      })
    }
  })
  return all
}

layer(NatsFixture.layer, { timeout: 60_000, excludeTestServices: true })("API contract", (it) => {
  it.scoped("the server serves every declared endpoint, and its read answers decode with the declared schemas", () =>
    Effect.gen(function* () {
      const broker = yield* brokerOnFixture
      const receiver = yield* scopedReceiver()
      yield* broker.client.destinations.create({ payload: { id: "contract", url: receiver.url, subscriptions: [">"] } })
      const event = yield* broker.sluice.publish({ type: "contract.checked", key: "k1", data: { ok: true } })
      yield* waitForEffect(
        broker.client.events.get({ path: { id: event.id } }).pipe(Effect.map((d) => d.deliveries[0]?.state === "completed")),
        { description: "the event delivered and recorded" }
      )
      const endpoints = declared()
      expect(endpoints.length).toBeGreaterThan(20)

      for (const endpoint of endpoints) {
        const path = endpoint.path.replace(":id", endpoint.path.includes("/events/") ? event.id : "contract")
        const token = endpoint.producer ? broker.producerToken : broker.adminToken
        const read = endpoint.method === "GET"
        // Writes get an empty object: a served route answers 400 naming a field (or acts, for
        // those that need nothing), an unserved one 404 — removal is left out, it would end the check.
        if (endpoint.method === "DELETE") continue
        const response = yield* Effect.promise(() =>
          fetch(`${broker.adminUrl}${path}`, {
            method: endpoint.method,
            headers: { authorization: `Bearer ${token}`, ...(read ? {} : { "content-type": "application/json" }) },
            ...(read ? {} : { body: "{}" })
          })
        )
        const body = yield* Effect.promise(() => response.text())
        const what = `${endpoint.group}.${endpoint.name} (${endpoint.method} ${path}) → ${response.status} ${body.slice(0, 200)}`
        expect(response.status, what).not.toBe(404)
        expect(response.status, what).toBeLessThan(500)
        if (read && Option.isSome(endpoint.success)) {
          expect(response.status, what).toBe(200)
          const decoded = Schema.decodeUnknownEither(endpoint.success.value)(JSON.parse(body))
          expect(decoded._tag, `${what}: ${decoded._tag === "Left" ? String(decoded.left) : ""}`).toBe("Right")
        }
      }
    })
  )
})
