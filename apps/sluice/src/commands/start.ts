/** `sluice start`: the broker, its admin API and UI, with embedded NATS and PGlite unless configured. */
import { Command } from "@effect/cli"
import { HttpServer } from "@effect/platform"
import { Broker, BrokerConfig, Nats } from "@sluice/broker"
import { Config, Console, Effect, Layer, Logger, LogLevel, Option } from "effect"

const banner = Layer.effectDiscard(
  Effect.gen(function* () {
    const server = yield* HttpServer.HttpServer
    const natsUrl = yield* Nats.NatsUrl
    const config = yield* BrokerConfig.BrokerConfig
    const address = server.address
    const base = address._tag === "TcpAddress" ? `http://${address.hostname}:${address.port}` : `unix:${address.path}`
    const nats = Option.isSome(config.natsUrl) ? natsUrl : `${natsUrl} (embedded, store ${config.dataDir}/nats)`
    const history = Option.match(config.databaseUrl, {
      onNone: () => `PGlite (embedded, ${config.dataDir}/pglite)`,
      onSome: (url) => url.replace(/\/\/([^:@/]+):[^@/]*@/, "//$1:***@")
    })
    yield* Console.log(
      [
        "Sluice is running",
        `  admin UI:  ${base}/`,
        `  admin API: ${base}/api/v1`,
        `  NATS:      ${nats}`,
        `  history:   ${history}`,
        "Press Ctrl+C to stop."
      ].join("\n")
    )
  })
)

const logLevel = Config.logLevel("SLUICE_LOG_LEVEL").pipe(Config.withDefault(LogLevel.Info))

export const start = Command.make("start", {}, () =>
  Effect.gen(function* () {
    const settings = yield* BrokerConfig.fromEnvironment()
    const level = yield* logLevel
    return yield* Layer.launch(
      banner.pipe(Layer.provideMerge(Broker.layer), Layer.provide(BrokerConfig.layer(settings)))
    ).pipe(Logger.withMinimumLogLevel(level))
  })
).pipe(Command.withDescription("start the broker (embedded nats-server and PGlite unless SLUICE_NATS_URL / SLUICE_DATABASE_URL are set)"))
