#!/usr/bin/env node
/** Entry point of the `sluice` command. */
import { Command, ValidationError } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Console, Effect } from "effect"
import { describeError } from "./AdminClient.js"
import { sluice } from "./Cli.js"
import { destinations } from "./commands/destinations.js"
import { publish } from "./commands/publish.js"
import { start } from "./commands/start.js"
import { status } from "./commands/status.js"

const cli = Command.run(sluice.pipe(Command.withSubcommands([start, publish, destinations, status])), {
  name: "sluice",
  version: "0.1.0"
})

NodeRuntime.runMain(
  cli(process.argv).pipe(
    Effect.tapError((error) =>
      ValidationError.isValidationError(error) ? Effect.void : Console.error(`sluice: ${describeError(error)}`)
    ),
    Effect.provide(NodeContext.layer)
  ),
  { disableErrorReporting: true }
)
