#!/usr/bin/env node
/** Entry point of the `sluice` command. */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Cause, Console, Effect } from "effect"
import { describeError } from "./AdminClient.js"
import { sluice } from "./Cli.js"
import { audit } from "./commands/audit.js"
import { destinations } from "./commands/destinations.js"
import { events } from "./commands/events.js"
import { outboxRelay } from "./commands/outboxRelay.js"
import { publish } from "./commands/publish.js"
import { start } from "./commands/start.js"
import { status } from "./commands/status.js"

const cli = Command.run(sluice.pipe(Command.withSubcommands([start, publish, destinations, events, audit, status, outboxRelay])), {
  name: "sluice",
  version: "0.1.0"
})

NodeRuntime.runMain(
  cli(process.argv).pipe(
    Effect.tapError((error) =>
      ValidationError.isValidationError(error) ? Effect.void : Console.error(`sluice: ${describeError(error)}`)
    ),
    // A defect (a bug, not a typed failure) is printed whole rather than exiting silently.
    Effect.tapDefect((cause) => Console.error(`sluice: unexpected failure\n${Cause.pretty(cause)}`)),
    Effect.provide(NodeContext.layer)
  ),
  { disableErrorReporting: true }
)
