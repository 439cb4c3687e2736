/**
 * The admin HTTP API server, derived from the API definition in `@sluice/protocol`.
 */
import { HttpApiBuilder, HttpApp, HttpBody, HttpMethod, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import type { HttpServerError } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { AdminApi } from "@sluice/protocol"
import { Clock, Effect, Either, Layer, Schema } from "effect"
import { Server } from "node:http"
import * as AdminWeb from "./AdminWeb.js"
import * as Auth from "./Auth.js"
import { backlogOf } from "./Backlog.js"
import { BrokerConfig } from "./BrokerConfig.js"
import { Destinations } from "./Destinations.js"
import { recordedEvent, withPendingDeliveries } from "./EventStatus.js"
import { HistoryStore, type HistoryUnavailable, type InvalidCursor } from "./HistoryStore.js"
import * as Ingest from "./Ingest.js"
import * as RequestBody from "./RequestBody.js"
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

/** The largest admin API request body: destination settings and replay requests are a few KiB. */
export const MAX_ADMIN_BODY_BYTES = 1024 * 1024

const API_PREFIX = "/api/v1/"

const invalidResponse = (field: string, detail: string) =>
  HttpServerResponse.unsafeJson(
    Schema.encodeSync(AdminApi.InvalidRequest)(new AdminApi.InvalidRequest({ field, message: `${field}: ${detail}` })),
    { status: 400 }
  )

/**
 * The request with a body read the way hostile input must be read: at most
 * `MAX_ADMIN_BODY_BYTES` (413 beyond), UTF-8 only, JSON nested no deeper than
 * `RequestBody.MAX_JSON_DEPTH` and holding only text the database can store (400 naming the path).
 * The API's payload decoding reads `json` (or `text`, `arrayBuffer`) only after the token was
 * checked, so the checks run then, and once. Their failures are the API's own errors: the
 * platform turns a failed body read into a defect, and the API encodes a defect that is one
 * of its errors as that error's response.
 */
const checkedBody = (request: HttpServerRequest.HttpServerRequest): HttpServerRequest.HttpServerRequest => {
  const tooLarge = new AdminApi.PayloadTooLarge({
    message: `the request body is larger than ${MAX_ADMIN_BODY_BYTES} bytes, more than any admin request needs`,
    maxBytes: MAX_ADMIN_BODY_BYTES
  })
  const bytes = Effect.runSync(Effect.cached(RequestBody.readBytes(request, MAX_ADMIN_BODY_BYTES, tooLarge)))
  const text = Effect.flatMap(bytes, RequestBody.decodeUtf8)
  const json = Effect.flatMap(text, (body) => {
    if (body === "") return Effect.succeed(null)
    return Either.flatMap(RequestBody.parseJson(body), (value) => {
      const problem = RequestBody.checkJson(value)
      return problem === undefined ? Either.right(value) : Either.left(problem)
    })
  })
  // The platform types a body read's error as its own RequestError, while ours fails with the
  // API's InvalidRequest/PayloadTooLarge. The cast is the one place that type is overstated:
  // the handlers never catch RequestError here, and the API's error schemas encode what we fail
  // with into the 400/413 answers (hostileInput.test.ts checks each).
  const asPlatform = <A>(effect: Effect.Effect<A, AdminApi.InvalidRequest | AdminApi.PayloadTooLarge>) =>
    effect as unknown as Effect.Effect<A, HttpServerError.RequestError>
  const replaced: Partial<Record<PropertyKey, unknown>> = {
    text: asPlatform(text),
    json: asPlatform(json),
    arrayBuffer: asPlatform(Effect.map(bytes, (b) => new Uint8Array(b).buffer))
  }
  // A proxy rather than a copy: the request's own getters (`urlParamsBody` reads `this.text`)
  // see the checked body, and what the platform marks on the request lands on the original.
  return new Proxy(request, {
    get: (target, property, receiver) =>
      Object.hasOwn(replaced, property) ? replaced[property] : Reflect.get(target, property, receiver)
  })
}

/** What a query parameter may not hold: Postgres refuses NUL in text, which would answer 503 instead of 400. */
const badQueryParameter = (request: HttpServerRequest.HttpServerRequest): string | undefined => {
  const query = request.url.indexOf("?")
  if (query === -1) return undefined
  for (const [name, value] of new URLSearchParams(request.url.slice(query + 1))) {
    if (name.includes("\u0000") || value.includes("\u0000")) return name
  }
  return undefined
}

const ISSUE_MESSAGE_MAX = 200

const shorten = (text: string): string => (text.length > ISSUE_MESSAGE_MAX ? `${text.slice(0, ISSUE_MESSAGE_MAX)}…` : text)

interface DecodeIssue {
  readonly path: ReadonlyArray<PropertyKey>
  readonly message: string
}

/**
 * An optional field that fails reports a second issue, "Expected undefined, actual …", beside
 * the real one (at its path or below): the union's other member, which only confuses.
 */
const isOptionalNoise = (issue: DecodeIssue): boolean => issue.message.startsWith("Expected undefined, actual ")

const startsWith = (path: ReadonlyArray<PropertyKey>, prefix: ReadonlyArray<PropertyKey>): boolean =>
  prefix.length <= path.length && prefix.every((key, i) => key === path[i])

const isDecodeError = (body: unknown): body is { readonly _tag: string; readonly issues: ReadonlyArray<DecodeIssue> } =>
  typeof body === "object" &&
  body !== null &&
  (body as { _tag?: unknown })._tag === "HttpApiDecodeError" &&
  Array.isArray((body as { issues?: unknown }).issues)

/**
 * A schema failure of a request (`HttpApiDecodeError`, already a 400 response here) with one
 * line per problem, each starting with the field's path (`url: Expected string, actual 5`),
 * where the platform writes the whole schema as a tree; the issues stay, with long echoed
 * values cut short.
 */
const readableDecodeError = (response: HttpServerResponse.HttpServerResponse): HttpServerResponse.HttpServerResponse => {
  if (response.status !== 400 || response.body._tag !== "Uint8Array") return response
  let body: unknown
  try {
    body = JSON.parse(new TextDecoder().decode(response.body.body))
  } catch {
    return response
  }
  if (!isDecodeError(body)) return response
  const issues = body.issues
    .filter((issue, _, all) => !(isOptionalNoise(issue) && all.some((other) => other !== issue && startsWith(other.path, issue.path))))
    .map((issue) => ({ ...issue, message: shorten(issue.message) }))
  const message = issues
    .map((issue) => `${issue.path.length === 0 ? "(body)" : issue.path.map(String).join(".")}: ${issue.message}`)
    .join("; ")
  return HttpServerResponse.setBody(response, HttpBody.unsafeJson({ ...body, issues, message }))
}

/** How the admin address treats hostile requests to the API (see `checkedBody`, `readableDecodeError`). */
const guardApi = (app: HttpApp.Default): HttpApp.Default =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    if (!request.url.startsWith(API_PREFIX)) return yield* app
    const badParameter = badQueryParameter(request)
    if (badParameter !== undefined) return invalidResponse(badParameter, "must not contain U+0000 (NUL)")
    // The middleware sees the response only once it was sent: the rewrite goes in before.
    yield* HttpApp.appendPreResponseHandler((_, response) => Effect.succeed(readableDecodeError(response)))
    return yield* HttpMethod.hasBody(request.method)
      ? Effect.provideService(app, HttpServerRequest.HttpServerRequest, checkedBody(request))
      : app
  })

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
    return HttpApiBuilder.serve(guardApi).pipe(
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
