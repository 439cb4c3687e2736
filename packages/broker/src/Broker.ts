/**
 * The whole broker as one layer: NATS (external or embedded), the history database
 * (Postgres or embedded PGlite), the destination supervisor, the history writer and
 * pruner, and the admin API. `sluice start` launches it; tests build it in-process.
 */
import { Effect, Layer, Option } from "effect"
import { join } from "node:path"
import * as AdminServer from "./AdminServer.js"
import { BrokerConfig } from "./BrokerConfig.js"
import * as Database from "./Database.js"
import * as Destinations from "./Destinations.js"
import * as HealthStore from "./HealthStore.js"
import * as HistoryPruner from "./HistoryPruner.js"
import * as HistoryWriter from "./HistoryWriter.js"
import * as HttpSender from "./HttpSender.js"
import * as IdempotencyStore from "./IdempotencyStore.js"
import * as KeyVersions from "./KeyVersions.js"
import * as Leases from "./Leases.js"
import * as LossLedger from "./LossLedger.js"
import * as Nats from "./Nats.js"
import * as NatsServer from "./NatsServer.js"
import * as PgHistoryStore from "./PgHistoryStore.js"
import * as RateLimiter from "./RateLimiter.js"
import * as Recorder from "./Recorder.js"
import * as Replay from "./Replay.js"
import * as SecretBox from "./SecretBox.js"
import * as Supervisor from "./Supervisor.js"
import * as TransactionIds from "./TransactionIds.js"

/** The configured NATS, or an embedded nats-server kept under the data directory. */
export const natsUrlLayer = Layer.scoped(
  Nats.NatsUrl,
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    if (Option.isSome(config.natsUrl)) return config.natsUrl.value
    const server = yield* NatsServer.start({ storeDir: join(config.dataDir, "nats") })
    yield* Effect.logInfo(`embedded nats-server started at ${server.url} (store ${server.storeDir})`)
    return server.url
  })
)

/** The configured Postgres, or PGlite under the data directory. */
export const databaseLayer = Layer.unwrapEffect(
  Effect.gen(function* () {
    const config = yield* BrokerConfig
    return Option.match(config.databaseUrl, {
      onNone: () => Database.layerPglite(join(config.dataDir, "pglite")),
      onSome: (url) => Database.layerPostgres(url)
    })
  })
)

const core = Layer.mergeAll(Supervisor.layer, HistoryWriter.layer, HistoryPruner.layer).pipe(
  Layer.provideMerge(Layer.mergeAll(
      HealthStore.layer,
      KeyVersions.layer,
      IdempotencyStore.layer,
      TransactionIds.layer,
      LossLedger.layer,
      Leases.layer,
      RateLimiter.layerRegistry
    )),
  Layer.provideMerge(Recorder.layer),
  Layer.provideMerge(HttpSender.layer),
  Layer.provideMerge(PgHistoryStore.layer),
  Layer.provideMerge(SecretBox.layer),
  Layer.provideMerge(databaseLayer),
  Layer.provideMerge(Nats.layer),
  Layer.provideMerge(natsUrlLayer)
)

/** Everything but the HTTP server: what in-process tests need. */
export const layerWithoutServer = Layer.mergeAll(Destinations.layer, Replay.layer).pipe(Layer.provideMerge(core))

/** The broker with its admin API. */
export const layer = AdminServer.layer.pipe(Layer.provideMerge(layerWithoutServer))
