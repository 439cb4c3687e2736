/** `sluice destinations add|list|show|remove`. */
import { Args, Command, Options } from "@effect/cli"
import type { Destination } from "@sluice/protocol"
import { Console, Effect, Option } from "effect"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl, optionalText, orUndefined } from "../Cli.js"
import { table } from "../Output.js"

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

export const destinations = Command.make("destinations").pipe(
  Command.withDescription("manage destinations"),
  Command.withSubcommands([add, list, show, remove])
)
