/**
 * `GET /api/v1/live`: Server-Sent Events for the admin UI, so operators watching an incident
 * never refresh. `event: destinations` carries the same JSON as `GET /destinations`, sent on
 * connect and whenever anything in it changes (checked every second); a comment every 15 s
 * keeps proxies from closing an idle stream. `EventSource` cannot send headers, so the admin
 * token comes as `?token=`.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Schedule, Stream } from "effect"
import { AccessTokens, verifyAdmin } from "./Auth.js"
import { Destinations } from "./Destinations.js"

/** How often the snapshot is taken; a change reaches the UI within this. */
const CHECK_EVERY = "1 second"
const KEEPALIVE_EVERY = "15 seconds"

const encoder = new TextEncoder()

const frame = (event: string, data: string) => encoder.encode(`event: ${event}\ndata: ${data}\n\n`)

export const layer: Layer.Layer<never, never, Destinations | AccessTokens> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const destinations = yield* Destinations
    const tokens = yield* AccessTokens
    const snapshots = Stream.repeatEffectWithSchedule(
      destinations.list.pipe(
        Effect.map((list) => JSON.stringify(list)),
        Effect.catchAll(() => Effect.succeed(null))
      ),
      Schedule.spaced(CHECK_EVERY)
    ).pipe(
      Stream.filter((json): json is string => json !== null),
      Stream.changes,
      Stream.map((json) => frame("destinations", json))
    )
    const keepalive = Stream.repeatEffectWithSchedule(
      Effect.succeed(encoder.encode(": keepalive\n\n")),
      Schedule.spaced(KEEPALIVE_EVERY)
    ).pipe(Stream.drop(1))
    return HttpApiBuilder.Router.use((router) =>
      router.get(
        "/api/v1/live",
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const token = new URL(request.url, "http://sluice").searchParams.get("token") ?? ""
          return yield* verifyAdmin(tokens, token).pipe(
            Effect.as(
              HttpServerResponse.stream(Stream.merge(snapshots, keepalive), {
                contentType: "text/event-stream",
                headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
              })
            ),
            Effect.catchTag("Unauthorized", (error) =>
              HttpServerResponse.json({ _tag: "Unauthorized", message: error.message }, { status: 401 })
            )
          )
        })
      )
    )
  })
)
