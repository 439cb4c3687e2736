/** `sluice events list|replay`: the event history, filtered and paged, and replaying one event. */
import { Args, Command, Options } from "@effect/cli"
import { States } from "@sluice/protocol"
import { Console, Effect } from "effect"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl, optionalText, orUndefined } from "../Cli.js"
import { table } from "../Output.js"
import { timeOption } from "../TimeOption.js"

const list = Command.make(
  "list",
  {
    adminUrl,
    type: optionalText("type", "an event type, or a pattern as in subscriptions ('order.*', 'billing.>')"),
    key: optionalText("key", "only events about this resource"),
    destination: optionalText("destination", "only events delivered (or owed) to this destination"),
    state: Options.choice("state", States.DeliveryState.literals).pipe(
      Options.withDescription("only events with a delivery in this state (at --destination, else at any)"),
      Options.optional
    ),
    since: timeOption("since", "received at or after").pipe(Options.optional),
    until: timeOption("until", "received before").pipe(Options.optional),
    limit: Options.integer("limit").pipe(Options.withDescription("events per page, 1-500 (default 50)"), Options.optional),
    cursor: optionalText("cursor", "the next page, as printed after the previous one"),
    json: Options.boolean("json")
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const page = yield* client.events.list({
        urlParams: {
          type: orUndefined(o.type),
          key: orUndefined(o.key),
          destination: orUndefined(o.destination),
          state: orUndefined(o.state),
          since: orUndefined(o.since),
          until: orUndefined(o.until),
          limit: orUndefined(o.limit),
          cursor: orUndefined(o.cursor)
        }
      })
      if (o.json) return yield* Console.log(JSON.stringify(page, null, 2))
      if (page.items.length === 0) return yield* Console.log("no events match")
      yield* Console.log(
        table(
          ["ID", "TYPE", "KEY", "RECEIVED", "DELIVERIES"],
          page.items.map((e) => [
            e.id,
            e.type,
            e.key ?? "-",
            e.receivedAt,
            e.deliveries.map((d) => `${d.destinationId}:${d.state}`).join(" ") || "-"
          ])
        )
      )
      if (page.nextCursor !== null) yield* Console.log(`more: --cursor ${page.nextCursor}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("list events, newest first"))

const replay = Command.make(
  "replay",
  {
    adminUrl,
    id: Args.text({ name: "event-id" }),
    destination: Options.text("destination").pipe(Options.withDescription("the destination to deliver it to again"))
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      yield* client.events.replay({ path: { id: o.id }, payload: { destinationId: o.destination } })
      yield* Console.log(`event ${o.id} queued again for ${o.destination}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("deliver one event to one destination again (a new attempt of the same delivery)"))

export const events = Command.make("events").pipe(
  Command.withDescription("the event history"),
  Command.withSubcommands([list, replay])
)
