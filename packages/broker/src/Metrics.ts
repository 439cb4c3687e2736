/**
 * Prometheus metrics at `GET /metrics` (admin token as bearer), so an operator alerts on a
 * destination going down or a backlog growing without polling the admin API.
 *
 * The delivery counters are fed by the history facts as they are recorded (`FactFeed`):
 * the actors need not know about metrics, and every broker process counts the facts of all
 * of them, so any one process answers for the whole deployment (scrape one, or take `max`
 * across processes rather than `sum`). Counts start at the process's start and may miss
 * facts recorded while its NATS connection was down. The backlog and health gauges are read
 * at scrape time from JetStream and the health store. prom-client's default process metrics
 * come along.
 */
import { HttpApiBuilder, HttpServerResponse } from "@effect/platform"
import { AdminApi, States } from "@sluice/protocol"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client"
import { AccessTokens } from "./Auth.js"
import { backlogOf } from "./Backlog.js"
import { Destinations } from "./Destinations.js"
import type * as Fact from "./Fact.js"
import * as FactFeed from "./FactFeed.js"
import { adminOnly } from "./internal/adminRoute.js"
import { Nats } from "./Nats.js"

/** The Sluice metrics in one registry. */
export interface Instruments {
  readonly registry: Registry
  /** Attempts, by the outcome recorded (`success`, `failure`, `rejected`, `throttled`, `gone`). */
  readonly deliveries: Counter<"destination" | "outcome">
  readonly duration: Histogram<"destination">
  /** Attempts after which the event is retried. */
  readonly retries: Counter<"destination">
  /** Deliveries that reached a final state, with or without an attempt. */
  readonly final: Counter<"destination" | "state">
  readonly backlog: Gauge<"destination">
  readonly health: Gauge<"destination" | "state">
}

/** Attempt durations, up to the longest timeout a destination may set (300 s). */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300]

/** Registers the Sluice metrics in `registry`. */
export const instruments = (registry: Registry): Instruments => ({
  registry,
  deliveries: new Counter({
    name: "sluice_deliveries_total",
    help: "Delivery attempts, by destination and attempt outcome.",
    labelNames: ["destination", "outcome"],
    registers: [registry]
  }),
  duration: new Histogram({
    name: "sluice_delivery_duration_seconds",
    help: "Duration of delivery attempts (HTTP request to response or failure), by destination.",
    labelNames: ["destination"],
    buckets: DURATION_BUCKETS,
    registers: [registry]
  }),
  retries: new Counter({
    name: "sluice_retries_total",
    help: "Delivery attempts that ended in a scheduled retry, by destination.",
    labelNames: ["destination"],
    registers: [registry]
  }),
  final: new Counter({
    name: "sluice_deliveries_final_total",
    help: "Deliveries that reached a final state (completed, dead, canceled, ignored, duplicate, disabled), by destination.",
    labelNames: ["destination", "state"],
    registers: [registry]
  }),
  backlog: new Gauge({
    name: "sluice_backlog",
    help: "Events waiting in JetStream for the destination: pending plus delivered but unacknowledged.",
    labelNames: ["destination"],
    registers: [registry]
  }),
  health: new Gauge({
    name: "sluice_destination_health",
    help: "1 for the destination's current health state, 0 for the others.",
    labelNames: ["destination", "state"],
    registers: [registry]
  })
})

/** Counts what one fact says happened; operator actions and health changes count nothing here. */
export const observe = (metrics: Instruments, fact: Fact.Fact): void => {
  switch (fact._tag) {
    case "AttemptFinished": {
      const destination = fact.destinationId
      metrics.deliveries.inc({ destination, outcome: fact.outcome })
      metrics.duration.observe({ destination }, fact.durationMs / 1000)
      if (fact.state === "errored") metrics.retries.inc({ destination })
      if (States.isFinalDeliveryState(fact.state)) metrics.final.inc({ destination, state: fact.state })
      return
    }
    case "DeliveryChanged":
      if (States.isFinalDeliveryState(fact.state)) {
        metrics.final.inc({ destination: fact.destinationId, state: fact.state })
      }
      return
    case "HealthChanged":
    case "OperatorActed":
      return
  }
}

/** One destination as the scrape-time gauges show it; no backlog when JetStream did not answer. */
export interface DestinationNow {
  readonly id: string
  readonly state: States.HealthState
  readonly backlog: Option.Option<number>
}

/** Replaces the gauges with the destinations as they are now, so removed ones disappear. */
export const showDestinations = (metrics: Instruments, destinations: ReadonlyArray<DestinationNow>): void => {
  metrics.backlog.reset()
  metrics.health.reset()
  for (const d of destinations) {
    if (Option.isSome(d.backlog)) metrics.backlog.set({ destination: d.id }, d.backlog.value)
    for (const state of States.HealthState.literals) {
      metrics.health.set({ destination: d.id, state }, state === d.state ? 1 : 0)
    }
  }
}

/** The metrics in the Prometheus text format. */
export interface Exposition {
  readonly contentType: string
  readonly text: string
}

export class Metrics extends Context.Tag("@sluice/broker/Metrics")<
  Metrics,
  {
    /** Reads the gauges, then renders every metric. */
    readonly scrape: Effect.Effect<Exposition>
  }
>() {}

/** Backlogs read at once per scrape. */
const BACKLOG_CONCURRENCY = 8

const make = Effect.gen(function* () {
  const nats = yield* Nats
  const destinations = yield* Destinations
  // A registry of its own, so several brokers in one process (tests) do not collide.
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const metrics = instruments(registry)
  yield* FactFeed.subscribe(nats, (fact) => observe(metrics, fact))

  const readGauges = destinations.list.pipe(
    Effect.flatMap((list) =>
      Effect.forEach(
        list,
        (d) =>
          backlogOf(nats, d.id).pipe(
            Effect.map(({ pending, held }) => pending + held),
            Effect.tapError((error) => Effect.logWarning(`backlog of ${d.id} not read for the metrics`, error)),
            Effect.option,
            Effect.map((backlog): DestinationNow => ({ id: d.id, state: d.health.state, backlog }))
          ),
        { concurrency: BACKLOG_CONCURRENCY }
      )
    ),
    Effect.tap((now) => Effect.sync(() => showDestinations(metrics, now))),
    // Without the destinations, the gauges show nothing rather than stale values.
    Effect.catchAll((error) =>
      Effect.logWarning("destinations not read for the metrics", error).pipe(
        Effect.zipRight(Effect.sync(() => showDestinations(metrics, [])))
      )
    ),
    Effect.annotateLogs({ module: "Metrics" })
  )

  return Metrics.of({
    scrape: readGauges.pipe(
      Effect.zipRight(Effect.promise(() => registry.metrics())),
      Effect.map((text) => ({ contentType: registry.contentType, text }))
    )
  })
})

export const layer: Layer.Layer<Metrics, never, Nats | Destinations> = Layer.scoped(Metrics, make)

/** `GET /metrics`, to `Authorization: Bearer <admin token>` as the admin API. */
export const routes: Layer.Layer<never, never, Metrics | AccessTokens> = Layer.unwrapEffect(
  Effect.gen(function* () {
    const metrics = yield* Metrics
    const tokens = yield* AccessTokens
    return HttpApiBuilder.Router.use((router) =>
      router.get(
        "/metrics",
        Effect.gen(function* () {
          const token = yield* HttpApiBuilder.securityDecode(AdminApi.Authorization.security.bearer)
          return yield* adminOnly(
            tokens,
            Redacted.value(token),
            metrics.scrape.pipe(
              Effect.map(({ contentType, text }) =>
                HttpServerResponse.text(text, { contentType, headers: { "cache-control": "no-store" } })
              )
            )
          )
        })
      )
    )
  })
)
