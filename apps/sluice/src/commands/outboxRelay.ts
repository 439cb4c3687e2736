/** `sluice outbox-relay`: publishes a producer database's transactional outbox to JetStream until stopped. */
import { Command, Options } from "@effect/cli"
import { OutboxRelay } from "@sluice/sdk"
import { Config, Console, Duration, Effect, Layer, Option } from "effect"

const duration = (name: string, description: string, fallback: Duration.Duration) =>
  Options.text(name).pipe(
    Options.withDescription(`${description}, e.g. "500 millis" or "7 days" (default ${Duration.format(fallback)})`),
    Options.filterMap(Duration.decodeUnknown, `--${name} must be a duration such as "10 seconds"`),
    Options.withDefault(fallback)
  )

export const outboxRelay = Command.make(
  "outbox-relay",
  {
    databaseUrl: Options.text("database-url").pipe(
      Options.withDescription("Postgres holding the producer's sluice_outbox table"),
      Options.withFallbackConfig(Config.string("SLUICE_OUTBOX_DATABASE_URL"))
    ),
    natsUrl: Options.text("nats-url").pipe(
      Options.withDescription("NATS server URL(s), comma-separated"),
      Options.withFallbackConfig(Config.string("SLUICE_NATS_URL")),
      Options.withDefault("nats://127.0.0.1:4222")
    ),
    batchSize: Options.integer("batch-size").pipe(
      Options.withDescription("rows claimed per transaction"),
      Options.filterMap(
        (n) => (n >= 1 && n <= 10_000 ? Option.some(n) : Option.none()),
        "--batch-size must be a whole number from 1 to 10000"
      ),
      Options.withDefault(OutboxRelay.defaults.batchSize)
    ),
    pollInterval: duration("poll-interval", "how often to look for rows without a notification", OutboxRelay.defaults.pollInterval),
    retention: duration("retention", "how long sent rows are kept", OutboxRelay.defaults.retention)
  },
  (o) =>
    Effect.gen(function* () {
      const servers = o.natsUrl.split(",").map((s) => s.trim())
      yield* Console.log(`relaying the outbox to NATS at ${servers.join(", ")}; press Ctrl+C to stop`)
      return yield* Layer.launch(
        OutboxRelay.layer({
          databaseUrl: o.databaseUrl,
          servers,
          batchSize: o.batchSize,
          pollInterval: o.pollInterval,
          retention: o.retention
        })
      )
    })
).pipe(
  Command.withDescription(
    "publish the rows of a producer database's sluice_outbox table to JetStream (several relays may run at once)"
  )
)
