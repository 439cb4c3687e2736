/**
 * The `sluice` command line: start the broker, publish events, manage destinations and
 * look at an event's status.
 */
import { Command, Options } from "@effect/cli"
import { Config, Option } from "effect"
import { DEFAULT_ADMIN_URL } from "./AdminClient.js"

/** Where the admin API listens; shared by every subcommand that talks to a running broker. */
export const adminUrl = Options.text("admin-url").pipe(
  Options.withDescription("admin API of a running broker"),
  Options.withFallbackConfig(Config.string("SLUICE_ADMIN_URL")),
  Options.withDefault(DEFAULT_ADMIN_URL)
)

export const sluice = Command.make("sluice", {}).pipe(
  Command.withDescription("Sluice: an event broker that delivers events to HTTP destinations")
)

export const optionalText = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.optional)

export const orUndefined = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)
