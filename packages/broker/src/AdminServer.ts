/**
 * The admin HTTP API server, derived from the API definition in `@sluice/protocol`.
 */
import { HttpApiBuilder } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { AdminApi } from "@sluice/protocol"
import { Clock, Effect, Layer } from "effect"
import { Server } from "node:http"
import * as AdminWeb from "./AdminWeb.js"
import * as Auth from "./Auth.js"
import { backlogOf } from "./Backlog.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { Destinations } from "./Destinations.js"
import { recordedEvent, withPendingDeliveries } from "./EventStatus.js"
import { HistoryStore, type HistoryUnavailable, type InvalidCursor } from "./HistoryStore.js"
import * as Ingest from "./Ingest.js"
import * as Live from "./Live.js"
import * as Metrics from "./Metrics.js"
import { Nats, NatsUrl } from "./Nats.js"
import * as Probes from "./Probes.js"
import { Replay } from "./Replay.js"
import { VERSION } from "./version.js"

const OPERATOR = "admin"

const unavailable = (error: { readonly message: string }) => new AdminApi.Unavailable({ message: error.message })

/** The list errors a client can act on: a cursor it made up is named as the bad field. */
const listFailure = (error: InvalidCursor | HistoryUnavailable) =>
  error._tag === "InvalidCursor"
    ? new AdminApi.InvalidRequest({ field: "cursor", message: `cursor ${error.message}` })
    : unavailable(error)

/** Health transitions a destination's timeline shows. */
const HEALTH_TIMELINE_LIMIT = 100

const SystemLive = HttpApiBuilder.group(AdminApi.AdminApi, "system", (handlers) =>
  Effect.gen(function* () {
    // /info needs no token, so the user and password of a NATS URL stay out of it.
    const natsUrl = (yield* NatsUrl).replace(/\/\/[^@/,]*@/g, "//")
    return handlers.handle("info", () =>
      Effect.succeed({ version: VERSION, natsUrl, stream: "SLUICE_EVENTS" })
    )
  })
)

const DestinationsLive = HttpApiBuilder.group(AdminApi.AdminApi, "destinations", (handlers) =>
  Effect.gen(function* () {
    const destinations = yield* Destinations
    const store = yield* HistoryStore
    const nats = yield* Nats
    const replay = yield* Replay
    return handlers
      .handle("list", () => destinations.list)
      .handle("create", ({ payload }) => destinations.create(payload, OPERATOR))
      .handle("get", ({ path }) => destinations.get(path.id))
      .handle("update", ({ path, payload }) => destinations.update(path.id, payload, OPERATOR))
      .handle("remove", ({ path }) => destinations.remove(path.id, OPERATOR))
      .handle("pause", ({ path }) => destinations.act(path.id, { _tag: "pause" }, OPERATOR))
      .handle("resume", ({ path }) => destinations.act(path.id, { _tag: "resume" }, OPERATOR))
      .handle("enable", ({ path }) => destinations.act(path.id, { _tag: "enable" }, OPERATOR))
      .handle("disable", ({ path, payload }) =>
        destinations.act(path.id, { _tag: "disable", reason: payload.reason }, OPERATOR)
      )
      .handle("rotateSecret", ({ path }) =>
        destinations.rotateSecret(path.id, OPERATOR).pipe(Effect.map((secret) => ({ secret })))
      )
      .handle("health", ({ path }) =>
        destinations.get(path.id).pipe(
          Effect.zipRight(store.healthTimeline(path.id, HEALTH_TIMELINE_LIMIT).pipe(Effect.mapError(unavailable)))
        )
      )
      .handle("stats", ({ path }) =>
        Effect.gen(function* () {
          yield* destinations.get(path.id)
          const now = yield* Clock.currentTimeMillis
          const [backlog, stats] = yield* Effect.all(
            [backlogOf(nats, path.id), store.deliveryStats(path.id, now).pipe(Effect.mapError(unavailable))],
            { concurrency: 2 }
          )
          return { destinationId: path.id, backlog, ...stats }
        })
      )
      .handle("replay", ({ path, payload }) =>
        replay.deliveries(path.id, payload.states, payload.since, OPERATOR).pipe(Effect.map((replayed) => ({ replayed })))
      )
      .handle("replayStream", ({ path, payload }) =>
        replay.stream(path.id, payload.since, OPERATOR).pipe(Effect.map((replayed) => ({ replayed })))
      )
  })
)

const EventsLive = HttpApiBuilder.group(AdminApi.AdminApi, "events", (handlers) =>
  Effect.gen(function* () {
    const store = yield* HistoryStore
    const replay = yield* Replay
    return handlers
      .handle("list", ({ urlParams }) => store.listEvents(urlParams).pipe(Effect.mapError(listFailure)))
      .handle("get", ({ path }) =>
        recordedEvent(store, path.id).pipe(
          Effect.map(({ destinations, detail }) => withPendingDeliveries(detail, destinations))
        )
      )
      .handle("replay", ({ path, payload }) =>
        replay.event(path.id, payload.destinationId, OPERATOR).pipe(Effect.map((replayed) => ({ replayed })))
      )
  })
)

const AuditLive = HttpApiBuilder.group(AdminApi.AdminApi, "audit", (handlers) =>
  Effect.gen(function* () {
    const store = yield* HistoryStore
    return handlers.handle("list", ({ urlParams }) => store.listAudit(urlParams).pipe(Effect.mapError(listFailure)))
  })
)

export const ApiLive = HttpApiBuilder.api(AdminApi.AdminApi).pipe(
  Layer.provide(Ingest.layer),
  Layer.provide([SystemLive, DestinationsLive, EventsLive, AuditLive])
)

/** Node's close() waits for kept-alive client connections; at shutdown the admin server cuts them. */
class AdminHttpServer extends Server {
  override close(callback?: (error?: Error) => void): this {
    this.closeAllConnections()
    return super.close(callback)
  }
}

/**
 * The HTTP server on the configured admin address, serving the API, the admin UI, its live
 * streams, the probes and the metrics.
 */
export const layer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    return HttpApiBuilder.serve().pipe(
      Layer.provide(AdminWeb.layer),
      Layer.provide([Live.layer, Probes.layer, Metrics.routes]),
      Layer.provide(Metrics.layer),
      Layer.provide(ApiLive),
      // The admin and producer tokens: checked by the API's middleware, shown by the start banner.
      Layer.provide(Auth.layer),
      Layer.provideMerge(Auth.tokensLayer),
      Layer.provideMerge(
        NodeHttpServer.layer(() => new AdminHttpServer(), { port: config.adminPort, host: config.adminHost })
      )
    )
  })
)
