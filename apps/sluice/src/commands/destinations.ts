/**
 * `sluice destinations add|list|show|update|remove|pause|resume|enable|disable|health|stats|
 * rotate-secret|replay`.
 */
import { Args, Command, Options } from "@effect/cli"
import type { Destination, History } from "@sluice/protocol"
import { AdminApi, States } from "@sluice/protocol"
import { Array, Console, Effect, Option } from "effect"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl, optionalText, orUndefined } from "../Cli.js"
import { table } from "../Output.js"
import { timeOption } from "../TimeOption.js"

const id = Args.text({ name: "id" }).pipe(Args.withDescription("destination id"))

const describeRate = (d: Destination.DestinationView) =>
  d.rateLimit === null ? "unlimited" : `${d.rateLimit.perSecond}/s burst ${d.rateLimit.burst}`

const add = Command.make(
  "add",
  {
    adminUrl,
    url: Options.text("url").pipe(Options.withDescription("where events are POSTed")),
    subscribe: Options.text("subscribe").pipe(
      Options.withAlias("s"),
      Options.repeated,
      Options.withDescription("event-type pattern, repeatable ('order.*', 'billing.>', '>')")
    ),
    id: optionalText("id", "destination id (lowercase letters, digits, '-', '_'); generated when absent"),
    name: optionalText("name", "display name"),
    rate: Options.float("rate").pipe(Options.withDescription("max requests per second"), Options.optional),
    burst: Options.integer("burst").pipe(Options.withDescription("requests allowed at once above the rate"), Options.optional),
    concurrency: Options.integer("concurrency").pipe(Options.withDescription("max requests in flight"), Options.optional),
    ordering: Options.choice("ordering", ["key", "none"]).pipe(
      Options.withDescription("'key': one in flight per event key, in order; 'none': all in parallel"),
      Options.optional
    ),
    secret: optionalText("secret", "signing secret (whsec_…); generated when absent")
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const subscriptions = o.subscribe.length > 0 ? o.subscribe : [">"]
      const rate = orUndefined(o.rate)
      const created = yield* client.destinations.create({
        payload: {
          url: o.url,
          subscriptions: [subscriptions[0]!, ...subscriptions.slice(1)],
          id: orUndefined(o.id),
          name: orUndefined(o.name),
          secret: orUndefined(o.secret),
          rateLimit: rate === undefined ? undefined : { perSecond: rate, burst: Option.getOrElse(o.burst, () => Math.max(1, Math.ceil(rate))) },
          maxConcurrency: orUndefined(o.concurrency),
          ordering: orUndefined(o.ordering)
        }
      })
      yield* Console.log(`destination ${created.id} added: ${created.url} (${created.subscriptions.join(", ")})`)
      yield* Console.log(`signing secret (shown once): ${created.secret}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("add a destination"))

const list = Command.make("list", { adminUrl, json: Options.boolean("json") }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    const all = yield* client.destinations.list()
    if (o.json) return yield* Console.log(JSON.stringify(all, null, 2))
    if (all.length === 0) return yield* Console.log("no destinations yet — add one with `sluice destinations add --url … --subscribe …`")
    yield* Console.log(
      table(
        ["ID", "HEALTH", "URL", "SUBSCRIPTIONS", "RATE", "CONCURRENCY"],
        all.map((d) => [d.id, d.health.state, d.url, d.subscriptions.join(","), describeRate(d), String(d.maxConcurrency)])
      )
    )
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("list destinations"))

const show = Command.make("show", { adminUrl, id }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    const d = yield* client.destinations.get({ path: { id: o.id } })
    yield* Console.log(JSON.stringify(d, null, 2))
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("show a destination's configuration and health"))

const remove = Command.make("remove", { adminUrl, id }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    yield* client.destinations.remove({ path: { id: o.id } })
    yield* Console.log(`destination ${o.id} removed`)
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("remove a destination (its history stays)"))

const describeHealth = (d: Destination.DestinationView) => `${d.health.state} since ${d.health.since} (${d.health.reason})`

/**
 * The rate limit `update` sends: `--unlimited` removes it, `--rate` sets it (the burst from
 * `--burst`, else the rate rounded up), `--burst` alone changes the burst of the current limit;
 * undefined leaves it as it is. Contradicting flags are refused rather than one silently winning.
 */
const rateLimitUpdate = (o: {
  readonly id: string
  readonly rate: Option.Option<number>
  readonly burst: Option.Option<number>
  readonly unlimited: boolean
}) =>
  Effect.gen(function* () {
    const rate = orUndefined(o.rate)
    const burst = orUndefined(o.burst)
    if (o.unlimited) {
      if (rate !== undefined || burst !== undefined) {
        return yield* Effect.fail(new Error("--unlimited removes the rate limit, so give it without --rate and --burst"))
      }
      return null
    }
    if (rate !== undefined) return { perSecond: rate, burst: burst ?? Math.max(1, Math.ceil(rate)) }
    if (burst === undefined) return undefined
    const { rateLimit } = yield* (yield* AdminClient).destinations.get({ path: { id: o.id } })
    if (rateLimit === null) {
      return yield* Effect.fail(new Error(`destination ${o.id} has no rate limit to change the burst of; give --rate too`))
    }
    return { perSecond: rateLimit.perSecond, burst }
  })

const update = Command.make(
  "update",
  {
    adminUrl,
    id,
    url: optionalText("url", "new URL"),
    rate: Options.float("rate").pipe(Options.withDescription("max requests per second"), Options.optional),
    burst: Options.integer("burst").pipe(
      Options.withDescription("requests allowed at once above the rate; alone, changes the burst of the current rate"),
      Options.optional
    ),
    unlimited: Options.boolean("unlimited").pipe(Options.withDescription("remove the rate limit")),
    concurrency: Options.integer("concurrency").pipe(Options.withDescription("max requests in flight"), Options.optional)
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const updated = yield* client.destinations.update({
        path: { id: o.id },
        payload: {
          url: orUndefined(o.url),
          rateLimit: yield* rateLimitUpdate(o),
          maxConcurrency: orUndefined(o.concurrency)
        }
      })
      yield* Console.log(`destination ${updated.id} updated: rate ${describeRate(updated)}, concurrency ${updated.maxConcurrency}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("change a destination's URL, rate limit or concurrency (applies without a restart)"))

/** One operator health action: the command prints the destination's health afterwards. */
const healthAction = (
  name: "pause" | "resume" | "enable",
  description: string
) =>
  Command.make(name, { adminUrl, id }, (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const d = yield* client.destinations[name]({ path: { id: o.id } })
      yield* Console.log(`destination ${d.id}: ${describeHealth(d)}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
  ).pipe(Command.withDescription(description))

const pause = healthAction("pause", "stop deliveries (requests in flight finish); events accumulate in JetStream")
const resume = healthAction("resume", "deliver again, the backlog first, in order")
const enable = healthAction("enable", "re-enable a disabled destination")

const disable = Command.make(
  "disable",
  { adminUrl, id, reason: optionalText("reason", "why, recorded in the history") },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const d = yield* client.destinations.disable({ path: { id: o.id }, payload: { reason: Option.getOrElse(o.reason, () => "") } })
      yield* Console.log(`destination ${d.id}: ${describeHealth(d)}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("disable a destination: new events are recorded `disabled` and can be replayed later"))

const health = Command.make("health", { adminUrl, id, json: Options.boolean("json") }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    const timeline = yield* client.destinations.health({ path: { id: o.id } })
    if (o.json) return yield* Console.log(JSON.stringify(timeline, null, 2))
    if (timeline.length === 0) return yield* Console.log(`destination ${o.id} has been active since it was added`)
    yield* Console.log(table(["AT", "CHANGE", "REASON"], timeline.map((t) => [t.at, `${t.from} → ${t.to}`, t.reason])))
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("show a destination's health transitions, newest first"))

const describeLatency = (w: History.LatencyWindow) =>
  w.count === 0 ? `${w.window}: no successful attempts` : `${w.window}: p50 ${Math.round(w.p50Ms ?? 0)} ms, p99 ${Math.round(w.p99Ms ?? 0)} ms (${w.count} attempts)`

const stats = Command.make("stats", { adminUrl, id, json: Options.boolean("json") }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    const s = yield* client.destinations.stats({ path: { id: o.id } })
    if (o.json) return yield* Console.log(JSON.stringify(s, null, 2))
    const counted = States.DeliveryState.literals.filter((state) => s.states[state] > 0)
    const succeeded = s.throughput.reduce((n, p) => n + p.succeeded, 0)
    const failed = s.throughput.reduce((n, p) => n + p.failed, 0)
    yield* Console.log(
      [
        `destination ${s.destinationId}`,
        `backlog: ${s.backlog.pending} waiting in JetStream, ${s.backlog.held} held by the actor`,
        `deliveries: ${counted.length === 0 ? "none yet" : counted.map((state) => `${state} ${s.states[state]}`).join(", ")}`,
        ...s.latency.map((w) => `latency ${describeLatency(w)}`),
        `last 60 minutes: ${succeeded} attempts succeeded, ${failed} did not`
      ].join("\n")
    )
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("show a destination's backlog, delivery counts, latency and throughput"))

const rotateSecret = Command.make("rotate-secret", { adminUrl, id }, (o) =>
  Effect.gen(function* () {
    const client = yield* AdminClient
    const { secret } = yield* client.destinations.rotateSecret({ path: { id: o.id } })
    yield* Console.log(`destination ${o.id}: requests are signed with the new secret from now on`)
    yield* Console.log(`signing secret (shown once): ${secret}`)
  }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("give a destination a new signing secret (the old one stops working at once)"))

const replay = Command.make(
  "replay",
  {
    adminUrl,
    id,
    since: timeOption("since", "replay from this time on"),
    state: Options.choice("state", States.DeliveryState.literals).pipe(
      Options.repeated,
      Options.withDescription("replay deliveries in this state, repeatable (default: dead, disabled, canceled)")
    ),
    stream: Options.boolean("stream").pipe(
      Options.withDescription("replay every event the destination subscribes to that JetStream still holds")
    )
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      if (o.stream && o.state.length > 0) {
        return yield* Effect.fail(new Error("--state selects recorded deliveries; --stream replays everything, so use one or the other"))
      }
      const { replayed } = o.stream
        ? yield* client.destinations.replayStream({ path: { id: o.id }, payload: { since: o.since } })
        : yield* client.destinations.replay({
            path: { id: o.id },
            payload: AdminApi.ReplayDeliveries.make(
              Array.isNonEmptyArray(o.state) ? { since: o.since, states: o.state } : { since: o.since }
            )
          })
      yield* Console.log(`destination ${o.id}: ${replayed} event${replayed === 1 ? "" : "s"} queued again`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("deliver a destination's dead/disabled/canceled deliveries (or, with --stream, everything) since a time again"))

export const destinations = Command.make("destinations").pipe(
  Command.withDescription("manage destinations"),
  Command.withSubcommands([
    add,
    list,
    show,
    update,
    remove,
    pause,
    resume,
    enable,
    disable,
    health,
    stats,
    rotateSecret,
    replay
  ])
)
