/** `sluice status <event-id>`: what happened to an event at each destination. */
import { Args, Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl } from "../Cli.js"
import { table } from "../Output.js"

export const status = Command.make(
  "status",
  { adminUrl, id: Args.text({ name: "event-id" }), json: Options.boolean("json") },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const detail = yield* client.events.get({ path: { id: o.id } })
      if (o.json) return yield* Console.log(JSON.stringify(detail, null, 2))
      const e = detail.event
      yield* Console.log(
        `event ${e.id}  type ${e.type}${e.key === null ? "" : `  key ${e.key}`}${e.version === null ? "" : `  version ${e.version}`}`
      )
      yield* Console.log(`received ${e.receivedAt} (stream seq ${e.streamSeq})`)
      if (detail.deliveries.length === 0) return yield* Console.log("no destination subscribed to this event")
      yield* Console.log(
        table(
          ["DESTINATION", "STATE", "ATTEMPTS", "LAST STATUS", "LAST ERROR"],
          detail.deliveries.map((d) => [
            d.destinationId,
            d.state,
            String(d.attempts),
            d.lastStatusCode === null ? "-" : String(d.lastStatusCode),
            d.lastError ?? d.ignoredReason ?? (d.canceledBy ? `canceled by ${d.canceledBy}` : d.duplicateOf ? `duplicate of ${d.duplicateOf}` : "")
          ])
        )
      )
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("show an event and its delivery to every destination"))
