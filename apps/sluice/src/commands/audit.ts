/** `sluice audit`: what operators (and the broker for them) did, newest first. */
import { Command, Options } from "@effect/cli"
import { Console, Effect } from "effect"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl, optionalText, orUndefined } from "../Cli.js"
import { table } from "../Output.js"

export const audit = Command.make(
  "audit",
  {
    adminUrl,
    destination: optionalText("destination", "only what was done to this destination"),
    limit: Options.integer("limit").pipe(Options.withDescription("entries per page, 1-500 (default 50)"), Options.optional),
    cursor: optionalText("cursor", "the next page, as printed after the previous one"),
    json: Options.boolean("json")
  },
  (o) =>
    Effect.gen(function* () {
      const client = yield* AdminClient
      const page = yield* client.audit.list({
        urlParams: { destination: orUndefined(o.destination), limit: orUndefined(o.limit), cursor: orUndefined(o.cursor) }
      })
      if (o.json) return yield* Console.log(JSON.stringify(page, null, 2))
      if (page.items.length === 0) return yield* Console.log("nothing audited yet")
      yield* Console.log(
        table(
          ["AT", "ACTOR", "ACTION", "DESTINATION", "DETAILS"],
          page.items.map((a) => [
            a.at,
            a.actor,
            a.action,
            a.destinationId ?? "-",
            a.details === null ? "" : JSON.stringify(a.details)
          ])
        )
      )
      if (page.nextCursor !== null) yield* Console.log(`more: --cursor ${page.nextCursor}`)
    }).pipe(Effect.provide(adminLayer(o.adminUrl)))
).pipe(Command.withDescription("show the audit log, newest first"))
