/**
 * The newest version of each key a destination completed, so a stale event arriving later
 * is `ignored` and a repeat of a delivered version is a `duplicate` — across restarts and
 * processes. Kept in the NATS KV bucket `sluice_versions` (one entry per destination and
 * key, expiring with the events stream's max age: older events cannot arrive after that),
 * with a bounded in-process cache in front since each destination has one writer.
 */
import type { KV } from "@nats-io/kv"
import { Envelope } from "@sluice/protocol"
import { Context, Data, Duration, Effect, Either, Layer, Schema } from "effect"
import type * as Admission from "./Admission.js"
import { BrokerConfig } from "./BrokerConfig.js"
import * as KvBucket from "./KvBucket.js"
import { Nats } from "./Nats.js"

export const BUCKET = "sluice_versions"

export class KeyVersionsUnavailable extends Data.TaggedError("KeyVersionsUnavailable")<{ readonly message: string }> {}

export class KeyVersions extends Context.Tag("@sluice/broker/KeyVersions")<
  KeyVersions,
  {
    readonly get: (
      destinationId: string,
      key: string
    ) => Effect.Effect<Admission.Delivered | undefined, KeyVersionsUnavailable>
    /** Records a completed event's version unless a newer one is recorded. */
    readonly completed: (
      destinationId: string,
      key: string,
      delivered: Admission.Delivered
    ) => Effect.Effect<void, KeyVersionsUnavailable>
    /** Drops every version of a removed destination, so one re-created under its id starts afresh. */
    readonly forget: (destinationId: string) => Effect.Effect<void, KeyVersionsUnavailable>
  }
>() {}

const Entry = Schema.parseJson(Schema.Struct({ version: Envelope.EventVersion, eventId: Schema.String }))
const decodeEntry = Schema.decodeUnknownEither(Entry)
const encodeEntry = Schema.encodeSync(Entry)

/** KV keys allow letters, digits, `-`, `_`, `=` and `.`: the event key goes in as base64url. */
const entryKey = (destinationId: string, key: string) =>
  `${destinationId}.${Buffer.from(key, "utf8").toString("base64url") || "_"}`

/** Entries cached per process; beyond that the oldest are forgotten and read again when needed. */
const CACHE_SIZE = 100_000

export const layer: Layer.Layer<KeyVersions, KeyVersionsUnavailable, Nats | BrokerConfig> = Layer.effect(
  KeyVersions,
  Effect.gen(function* () {
    const { js, jsm, replicas } = yield* Nats
    const config = yield* BrokerConfig
    const unavailable = (cause: unknown) => new KeyVersionsUnavailable({ message: `key versions: ${String(cause)}` })
    const kv: KV = yield* Effect.tryPromise({
      try: () =>
        KvBucket.open(js, BUCKET, { replicas, description: "Sluice: newest delivered version per destination and key", ttlMs: Duration.toMillis(config.streamMaxAge) }),
      catch: unavailable
    })
    const cache = new Map<string, Admission.Delivered | null>()
    const remember = (k: string, value: Admission.Delivered | null) => {
      cache.delete(k)
      cache.set(k, value)
      if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!)
    }
    const get = (destinationId: string, key: string) =>
      Effect.gen(function* () {
        const k = entryKey(destinationId, key)
        const cached = cache.get(k)
        if (cached !== undefined) return cached ?? undefined
        const entry = yield* Effect.tryPromise({ try: () => kv.get(k), catch: unavailable })
        const value =
          entry === null || entry.operation !== "PUT" ? null : Either.getOrNull(decodeEntry(entry.string()))
        remember(k, value)
        return value ?? undefined
      })
    return KeyVersions.of({
      get,
      completed: (destinationId, key, delivered) =>
        Effect.gen(function* () {
          const current = yield* get(destinationId, key)
          if (current !== undefined && Envelope.compareVersions(current.version, delivered.version) !== -1) return
          const k = entryKey(destinationId, key)
          yield* Effect.tryPromise({ try: () => kv.put(k, encodeEntry(delivered)), catch: unavailable })
          remember(k, delivered)
        }),
      forget: (destinationId) =>
        Effect.gen(function* () {
          // One purge of the bucket's stream by subject, instead of a delete per key.
          yield* Effect.tryPromise({
            try: () => jsm.streams.purge(`KV_${BUCKET}`, { filter: `$KV.${BUCKET}.${destinationId}.>` }),
            catch: unavailable
          })
          for (const k of [...cache.keys()]) if (k.startsWith(`${destinationId}.`)) cache.delete(k)
        })
    })
  })
)
