/**
 * The `sluice` command line: start the broker, publish events, manage destinations and
 * look at an event's status.
 */
import { Command, Options } from "@effect/cli"
import { Config, Option } from "effect"
import type { AdminEndpoint } from "./AdminClient.js"
import { DEFAULT_ADMIN_URL } from "./AdminClient.js"

/**
 * Where the admin API listens and the admin token to send (`--admin-url`, `--admin-token`);
 * shared by every subcommand that talks to a running broker. Without a token the CLI uses
 * the one a local broker generated into its data directory.
 */
export const adminUrl: Options.Options<AdminEndpoint> = Options.all({
  url: Options.text("admin-url").pipe(
    Options.withDescription("admin API of a running broker"),
    Options.withFallbackConfig(Config.string("SLUICE_ADMIN_URL")),
    Options.withDefault(DEFAULT_ADMIN_URL)
  ),
  token: Options.redacted("admin-token").pipe(
    Options.withDescription("admin token (default: SLUICE_ADMIN_TOKEN, else <SLUICE_DATA_DIR or .sluice>/admin-token)"),
    Options.withFallbackConfig(Config.redacted("SLUICE_ADMIN_TOKEN")),
    Options.optional
  )
})

export const sluice = Command.make("sluice", {}).pipe(
  Command.withDescription("Sluice: an event broker that delivers events to HTTP destinations")
)

export const optionalText = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.optional)

export const orUndefined = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)
