/**
 * The admin HTTP API server, derived from the API definition in `@sluice/protocol`.
 */
import { HttpApiBuilder } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { AdminApi } from "@sluice/protocol"
import { Effect, Layer, Option } from "effect"
import { createServer } from "node:http"
import { BrokerConfig } from "./BrokerConfig.js"
import { Destinations } from "./Destinations.js"
import { withPendingDeliveries } from "./EventStatus.js"
import { HistoryStore } from "./HistoryStore.js"
import { NatsUrl } from "./Nats.js"
import { VERSION } from "./version.js"

const OPERATOR = "admin"

const unavailable = (error: { readonly message: string }) => new AdminApi.Unavailable({ message: error.message })

const SystemLive = HttpApiBuilder.group(AdminApi.AdminApi, "system", (handlers) =>
  Effect.gen(function* () {
    const natsUrl = yield* NatsUrl
    return handlers.handle("info", () =>
      Effect.succeed({ version: VERSION, natsUrl, stream: "SLUICE_EVENTS" })
    )
  })
)

const DestinationsLive = HttpApiBuilder.group(AdminApi.AdminApi, "destinations", (handlers) =>
  Effect.gen(function* () {
    const destinations = yield* Destinations
    return handlers
      .handle("list", () => destinations.list)
      .handle("create", ({ payload }) => destinations.create(payload, OPERATOR))
      .handle("get", ({ path }) => destinations.get(path.id))
      .handle("update", ({ path, payload }) => destinations.update(path.id, payload, OPERATOR))
      .handle("remove", ({ path }) => destinations.remove(path.id, OPERATOR))
  })
)

const EventsLive = HttpApiBuilder.group(AdminApi.AdminApi, "events", (handlers) =>
  Effect.gen(function* () {
    const store = yield* HistoryStore
    return handlers.handle("get", ({ path }) =>
      Effect.gen(function* () {
        const detail = yield* store.getEvent(path.id).pipe(Effect.mapError(unavailable))
        if (Option.isNone(detail)) {
          return yield* Effect.fail(new AdminApi.NotFound({ message: `event ${path.id} is not in the history (yet)` }))
        }
        const all = yield* store.listDestinations.pipe(Effect.mapError(unavailable))
        return withPendingDeliveries(detail.value, all)
      })
    )
  })
)

export const ApiLive = HttpApiBuilder.api(AdminApi.AdminApi).pipe(
  Layer.provide([SystemLive, DestinationsLive, EventsLive])
)

/** The HTTP server on the configured admin address, serving the API. */
export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    return HttpApiBuilder.serve().pipe(
      Layer.provide(ApiLive),
      Layer.provideMerge(NodeHttpServer.layer(createServer, { port: config.adminPort, host: config.adminHost }))
    )
  })
)
