/**
 * Server-Sent Events for the admin UI, so operators watching an incident never refresh.
 * `EventSource` cannot send headers, so the admin token comes as `?token=`; a comment every
 * 15 s keeps proxies from closing an idle stream.
 *
 * - `GET /api/v1/live`: `event: destinations` carries the same JSON as `GET /destinations`,
 *   sent on connect and whenever anything in it changes (checked every second).
 * - `GET /api/v1/stream`: what happens, as it happens, from every broker process:
 *   `event: health` carries each `HealthChanged` fact, `event: delivery` each
 *   `AttemptFinished` and `DeliveryChanged` fact, as the JSON the history records. A
 *   `: subscribed` comment says every fact from then on will follow.
 */
import { HttpApiBuilder, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { Effect, Layer, Schedule, Stream } from "effect"
import { AccessTokens } from "./Auth.js"
import { Destinations } from "./Destinations.js"
import * as Fact from "./Fact.js"
import * as FactFeed from "./FactFeed.js"
import { adminOnly } from "./internal/adminRoute.js"
import { Nats } from "./Nats.js"

/** How often the snapshot is taken; a change reaches the UI within this. */
const CHECK_EVERY = "1 second"
const KEEPALIVE_EVERY = "15 seconds"
/** Facts kept for a client that reads slower than they come; past this the oldest are dropped, the broker never waits. */
const FACTS_BUFFERED = 4_096

const encoder = new TextEncoder()

const frame = (event: string, data: string) => encoder.encode(`event: ${event}\ndata: ${data}\n\n`)

const comment = (text: string) => encoder.encode(`: ${text}\n\n`)

const keepalive = Stream.repeatEffectWithSchedule(
  Effect.succeed(comment("keepalive")),
  Schedule.spaced(KEEPALIVE_EVERY)
).pipe(Stream.drop(1))

/** The SSE event a fact is sent as; none for the facts the stream leaves out (operator actions). */
const eventOf = (fact: Fact.Fact): string | null => {
  switch (fact._tag) {
    case "HealthChanged":
      return "health"
    case "AttemptFinished":
    case "DeliveryChanged":
      return "delivery"
    case "OperatorActed":
      return null
  }
}

export const layer: Layer.Layer<never, never, Destinations | AccessTokens | Nats> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const destinations = yield* Destinations
    const tokens = yield* AccessTokens
    const nats = yield* Nats

    /** A route answering `events` as an event stream, to the admin token in `?token=`. */
    const eventStream = (path: `/${string}`, events: Stream.Stream<Uint8Array>) =>
      HttpApiBuilder.Router.use((router) =>
        router.get(
          path,
          Effect.gen(function* () {
            const request = yield* HttpServerRequest.HttpServerRequest
            const token = new URL(request.url, "http://sluice").searchParams.get("token") ?? ""
            return yield* adminOnly(
              tokens,
              token,
              Effect.succeed(
                HttpServerResponse.stream(Stream.merge(events, keepalive), {
                  contentType: "text/event-stream",
                  headers: { "cache-control": "no-cache", "x-accel-buffering": "no" }
                })
              )
            )
          })
        )
      )

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

    // One subscription per client, for as long as it listens.
    const facts = Stream.asyncScoped<Uint8Array>(
      (emit) =>
        FactFeed.subscribe(nats, (fact) => {
          const event = eventOf(fact)
          if (event !== null) void emit.single(frame(event, Fact.encode(fact)))
        }).pipe(Effect.andThen(Effect.promise(() => emit.single(comment("subscribed"))))),
      { bufferSize: FACTS_BUFFERED, strategy: "sliding" }
    )

    return Layer.mergeAll(eventStream("/api/v1/live", snapshots), eventStream("/api/v1/stream", facts))
  })
)
