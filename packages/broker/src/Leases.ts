/**
 * Destination ownership across broker processes, kept in NATS: each process announces itself
 * in the `sluice_members` bucket and holds one lease per destination it runs in the
 * `sluice_leases` bucket. Every write is a compare-and-set, so two processes can never both
 * believe they took or renewed the same lease; `LeasePolicy` decides what to take and give back.
 */
import type { KV, KvEntry } from "@nats-io/kv"
import { Context, Data, Duration, Effect, Either, Layer, Option, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import * as KvBucket from "./KvBucket.js"
import type * as LeasePolicy from "./LeasePolicy.js"
import { Nats } from "./Nats.js"

export const LEASES_BUCKET = "sluice_leases"
export const MEMBERS_BUCKET = "sluice_members"

export class LeasesUnavailable extends Data.TaggedError("LeasesUnavailable")<{ readonly message: string }> {}

/** A lease as this process knows it, with the revision a compare-and-set needs. */
export type Held = LeasePolicy.Lease & { readonly revision: number }

export class Leases extends Context.Tag("@sluice/broker/Leases")<
  Leases,
  {
    /** This start of this process: unique, so a restarted process never mistakes a dead one's leases for its own. */
    readonly self: string
    readonly name: string
    /** How long a lease lasts unrenewed. */
    readonly ttlMs: number
    /** Every destination's lease as last seen; absent = free. */
    readonly leases: Effect.Effect<ReadonlyMap<string, Held>>
    /** Every announced process, live or not. */
    readonly members: Effect.Effect<ReadonlyMap<string, LeasePolicy.Member>>
    /** Tells the others this process is alive and how many more leases it wants. */
    readonly announce: (wants: number) => Effect.Effect<void, LeasesUnavailable>
    /**
     * Takes a free or expired lease: the lease now held, and the one it replaced when that
     * one had expired rather than been given back (a takeover). None when another won.
     */
    readonly acquire: (
      destinationId: string
    ) => Effect.Effect<Option.Option<{ readonly held: Held; readonly expired: Held | undefined }>, LeasesUnavailable>
    /** Extends a held lease; none when it is no longer ours. */
    readonly renew: (destinationId: string, held: Held) => Effect.Effect<Option.Option<Held>, LeasesUnavailable>
    /** Gives a lease back at once, so the next holder need not wait for it to expire. */
    readonly release: (destinationId: string, held: Held) => Effect.Effect<void, LeasesUnavailable>
  }
>() {}

const LeaseJson = Schema.parseJson(
  Schema.Struct({ owner: Schema.String, name: Schema.String, expiresAt: Schema.Number })
)
const MemberJson = Schema.parseJson(
  Schema.Struct({ name: Schema.String, expiresAt: Schema.Number, wants: Schema.Number })
)
const decodeLease = Schema.decodeUnknownEither(LeaseJson)
const decodeMember = Schema.decodeUnknownEither(MemberJson)
const encodeLease = Schema.encodeSync(LeaseJson)
const encodeMember = Schema.encodeSync(MemberJson)

/** Process names may hold anything; KV keys may not. */
const keySafe = (name: string) => name.replace(/[^-\w]/g, "_").slice(0, 64)

/** `create`/`update` lost to another writer: the lease is someone else's. */
class Lost extends Data.TaggedError("Lost") {}

export const layer: Layer.Layer<Leases, LeasesUnavailable, Nats | BrokerConfig> = Layer.scoped(
  Leases,
  Effect.gen(function* () {
    const { js } = yield* Nats
    const config = yield* BrokerConfig
    const ttlMs = Duration.toMillis(config.leaseTtl)
    const self = `${keySafe(config.processName)}-${randomBytes(6).toString("hex")}`
    const unavailable = (cause: unknown) => new LeasesUnavailable({ message: `destination leases: ${String(cause)}` })
    const tryKv = <A>(f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (cause) => (KvBucket.isConflict(cause) ? new Lost() : unavailable(cause)) })

    // Entries of dead processes and removed destinations age out; live ones are rewritten every third of a TTL.
    const keep = Math.max(60_000, 10 * ttlMs)
    const [leaseKv, memberKv] = yield* Effect.tryPromise({
      try: () =>
        Promise.all([
          KvBucket.open(js, LEASES_BUCKET, { description: "Sluice: which broker process runs each destination", ttlMs: keep }),
          KvBucket.open(js, MEMBERS_BUCKET, { description: "Sluice: live broker processes", ttlMs: keep })
        ]),
      catch: unavailable
    })
    const fromEntry =
      <A>(decode: (text: string) => Either.Either<A, unknown>) =>
      (entry: KvEntry) =>
        Either.getOrUndefined(decode(entry.string()))
    const follow = <A>(kv: KV, decode: (text: string) => Either.Either<A, unknown>) =>
      Effect.acquireRelease(
        Effect.tryPromise({ try: () => KvBucket.follow(kv, fromEntry(decode)), catch: unavailable }),
        (copy) => Effect.sync(() => copy.stop())
      )
    const leases = yield* follow(leaseKv, decodeLease)
    const members = yield* follow(memberKv, decodeMember)

    const lease = (expiresAt: number): LeasePolicy.Lease => ({ owner: self, name: config.processName, expiresAt })
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)

    // Leaving tells the others at once instead of after a TTL; leases are given back by their holders first.
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => memberKv.delete(self).catch(() => undefined))
    )

    return Leases.of({
      self,
      name: config.processName,
      ttlMs,
      leases: Effect.sync(() => leases.current),
      members: Effect.sync(() => members.current),
      announce: (wants) =>
        now.pipe(
          Effect.flatMap((at) =>
            Effect.tryPromise({
              try: () => memberKv.put(self, encodeMember({ name: config.processName, expiresAt: at + ttlMs, wants })),
              catch: unavailable
            })
          ),
          Effect.asVoid
        ),
      acquire: (destinationId) =>
        Effect.gen(function* () {
          const entry = yield* tryKv(() => leaseKv.get(destinationId))
          const at = yield* now
          const next = lease(at + ttlMs)
          const stored =
            entry === null || entry.operation !== "PUT"
              ? undefined
              : Either.getOrUndefined(decodeLease(entry.string()))
          if (stored !== undefined && stored.expiresAt > at) return Option.none()
          const revision = yield* tryKv(() =>
            entry === null ? leaseKv.create(destinationId, encodeLease(next)) : leaseKv.update(destinationId, encodeLease(next), entry.revision)
          )
          const expired = stored === undefined || entry === null ? undefined : { ...stored, revision: entry.revision }
          return Option.some({ held: { ...next, revision }, expired })
        }).pipe(Effect.catchTag("Lost", () => Effect.succeedNone)),
      renew: (destinationId, held) =>
        Effect.gen(function* () {
          const next = lease((yield* now) + ttlMs)
          const revision = yield* tryKv(() => leaseKv.update(destinationId, encodeLease(next), held.revision))
          return Option.some({ ...next, revision })
        }).pipe(Effect.catchTag("Lost", () => Effect.succeedNone)),
      release: (destinationId, held) =>
        tryKv(() => leaseKv.delete(destinationId, { previousSeq: held.revision })).pipe(
          // A renewal this process wrote but did not see answered: the lease is still ours at a later revision.
          Effect.catchTag("Lost", () =>
            tryKv(async () => {
              const entry = await leaseKv.get(destinationId)
              if (entry === null || entry.operation !== "PUT") return
              const stored = Either.getOrUndefined(decodeLease(entry.string()))
              if (stored?.owner === self) await leaseKv.delete(destinationId, { previousSeq: entry.revision })
            })
          ),
          Effect.catchTag("Lost", () => Effect.void)
        )
    })
  })
)
