/**
 * Keeps the history within its retention (`SLUICE_HISTORY_RETENTION`): a background fiber
 * prunes what is older shortly after start and then every few minutes. `HistoryStore.prune`
 * works in small batches, so delivery's history writes never wait long behind it.
 */
import { Clock, Duration, Effect, Layer, Option, Schedule } from "effect"
import { BrokerConfig, type BrokerSettings } from "./BrokerConfig.js"
import { HistoryStore } from "./HistoryStore.js"

/** The first run lets the broker finish starting; later runs are `RUN_EVERY` apart. */
export const FIRST_RUN_AFTER = Duration.minutes(1)
export const RUN_EVERY = Duration.minutes(10)

/**
 * How long history is actually kept; none = forever. Never less than the stream's max age:
 * an event still in JetStream may yet be delivered, and its history must be there when the
 * facts of that delivery arrive.
 */
export const retention = (settings: Pick<BrokerSettings, "historyRetention" | "streamMaxAge">): Option.Option<Duration.Duration> => {
  const kept = Duration.max(settings.historyRetention, settings.streamMaxAge)
  return Duration.isFinite(kept) ? Option.some(kept) : Option.none()
}

const pruneOlderThan = (store: HistoryStore["Type"], kept: Duration.Duration) =>
  Effect.gen(function* () {
    const olderThan = new Date((yield* Clock.currentTimeMillis) - Duration.toMillis(kept))
    const pruned = yield* store.prune(olderThan)
    if (pruned.events + pruned.healthTransitions + pruned.auditEntries > 0) {
      yield* Effect.logInfo(
        `pruned history from before ${olderThan.toISOString()}: ${pruned.events} events, ` +
          `${pruned.healthTransitions} health transitions, ${pruned.auditEntries} audit entries`
      )
    }
  })

/** Prunes for the lifetime of the layer; a failed run is logged and the next one tries again. */
export const layer: Layer.Layer<never, never, BrokerConfig | HistoryStore> = Layer.scopedDiscard(
  Effect.gen(function* () {
    const settings = yield* BrokerConfig
    const store = yield* HistoryStore
    const kept = retention(settings)
    if (Option.isNone(kept)) return yield* Effect.logInfo("history is kept forever")
    yield* pruneOlderThan(store, kept.value).pipe(
      Effect.catchAllCause((cause) => Effect.logWarning("pruning the history failed; the next run tries again", cause)),
      Effect.repeat(Schedule.spaced(RUN_EVERY)),
      Effect.delay(FIRST_RUN_AFTER),
      Effect.annotateLogs({ module: "HistoryPruner" }),
      Effect.forkScoped
    )
  })
)
