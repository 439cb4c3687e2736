/**
 * Which event first carried an idempotency key, beyond JetStream's duplicate window: a
 * producer that retries the same payload an hour later still produces one delivery, the
 * repeat being recorded as a `duplicate` of the first. Kept in the NATS KV bucket
 * `sluice_idempotency` (expiring with the events stream's max age); the history database
 * enforces the same rule with a unique key of its own.
 */
import type { KV } from "@nats-io/kv"
import { Context, Data, Duration, Effect, Layer } from "effect"
import { createHash } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import * as KvBucket from "./KvBucket.js"
import { Nats } from "./Nats.js"

export const BUCKET = "sluice_idempotency"

export class IdempotencyUnavailable extends Data.TaggedError("IdempotencyUnavailable")<{ readonly message: string }> {}

export class IdempotencyStore extends Context.Tag("@sluice/broker/IdempotencyStore")<
  IdempotencyStore,
  {
    /** The id of the first event with this idempotency key: `eventId` itself when it is the first. */
    readonly claim: (idempotencyKey: string, eventId: string) => Effect.Effect<string, IdempotencyUnavailable>
  }
>() {}

const entryKey = (idempotencyKey: string) => createHash("sha256").update(idempotencyKey).digest("hex")

/** Claims cached per process; every destination's actor asks about the same events. */
const CACHE_SIZE = 100_000

export const layer: Layer.Layer<IdempotencyStore, IdempotencyUnavailable, Nats | BrokerConfig> = Layer.effect(
  IdempotencyStore,
  Effect.gen(function* () {
    const { js, replicas } = yield* Nats
    const config = yield* BrokerConfig
    const unavailable = (cause: unknown) => new IdempotencyUnavailable({ message: `idempotency keys: ${String(cause)}` })
    const kv: KV = yield* Effect.tryPromise({
      try: () =>
        KvBucket.open(js, BUCKET, { replicas, description: "Sluice: first event per idempotency key", ttlMs: Duration.toMillis(config.streamMaxAge) }),
      catch: unavailable
    })
    const cache = new Map<string, string>()
    const remember = (k: string, first: string) => {
      cache.set(k, first)
      if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!)
    }
    const claim = (idempotencyKey: string, eventId: string) =>
      Effect.gen(function* () {
        const k = entryKey(idempotencyKey)
        const cached = cache.get(k)
        if (cached !== undefined) return cached
        const created = yield* Effect.tryPromise({
          try: () => kv.create(k, eventId).then(() => true, (error) => (KvBucket.isConflict(error) ? false : Promise.reject(error))),
          catch: unavailable
        })
        const first = created
          ? eventId
          : yield* Effect.tryPromise({ try: () => kv.get(k), catch: unavailable }).pipe(
              Effect.map((entry) => (entry === null || entry.operation !== "PUT" ? eventId : entry.string()))
            )
        remember(k, first)
        return first
      })
    return IdempotencyStore.of({ claim })
  })
)
