/**
 * Destination ownership across broker processes, kept in NATS: each process announces itself
 * in the `sluice_members` bucket, renewing its entry by compare-and-set every round, and holds
 * one lease per destination it runs in the `sluice_leases` bucket. A lease lasts as long as
 * its holder's membership, so renewing costs one write per process, not one per destination.
 * Every write is a compare-and-set, so two processes can never both take the same lease;
 * `LeasePolicy` decides what to take and give back.
 */
import type { KV, KvEntry } from "@nats-io/kv"
import { Context, Data, Duration, Effect, Either, Layer, Option, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { BrokerConfig } from "./BrokerConfig.js"
import * as KvBucket from "./KvBucket.js"
import * as LeasePolicy from "./LeasePolicy.js"
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
    /** The name of the process holding the destination's lease in force, as far as this process can see. */
    readonly holder: (destinationId: string) => Effect.Effect<string | undefined>
    /**
     * Renews this process's membership — and with it every lease it holds — and tells the
     * others how many more leases it wants. Answers until when the leases are in force.
     */
    readonly announce: (wants: number) => Effect.Effect<number, LeasesUnavailable>
    /**
     * Takes a free lease, or one whose holder is gone: the lease now held, and the lease it
     * replaced when its holder did not give it back (a takeover). None when another won.
     */
    readonly acquire: (
      destinationId: string
    ) => Effect.Effect<Option.Option<{ readonly held: Held; readonly takenFrom: Held | undefined }>, LeasesUnavailable>
    /** Gives a lease back at once, so the next holder need not wait for this process to be gone. */
    readonly release: (destinationId: string, held: Held) => Effect.Effect<void, LeasesUnavailable>
    /** Leaves the members at once, so the others rebalance without waiting for the entry to run out. */
    readonly leave: Effect.Effect<void>
  }
>() {}

const LeaseJson = Schema.parseJson(Schema.Struct({ owner: Schema.String, name: Schema.String }))
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
    const { js, replicas } = yield* Nats
    const config = yield* BrokerConfig
    const ttlMs = Duration.toMillis(config.leaseTtl)
    const self = `${keySafe(config.processName)}-${randomBytes(6).toString("hex")}`
    const unavailable = (cause: unknown) => new LeasesUnavailable({ message: `destination leases: ${String(cause)}` })
    const tryKv = <A>(f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (cause) => (KvBucket.isConflict(cause) ? new Lost() : unavailable(cause)) })

    // Entries of dead processes age out (live ones are rewritten every round). Leases must not:
    // one is written only when taken, and an aged-out lease would look free while its holder runs.
    const [leaseKv, memberKv] = yield* Effect.tryPromise({
      try: () =>
        Promise.all([
          KvBucket.open(js, LEASES_BUCKET, { replicas, description: "Sluice: which broker process runs each destination" }),
          KvBucket.open(js, MEMBERS_BUCKET, {
            replicas,
            description: "Sluice: live broker processes",
            ttlMs: Math.max(60_000, 10 * ttlMs)
          })
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

    const lease: LeasePolicy.Lease = { owner: self, name: config.processName }
    const now = Effect.clockWith((clock) => clock.currentTimeMillis)
    let memberRevision = 0

    /** When the holder of `stored` stops counting as alive; read from the bucket itself, not the copy, before a takeover. */
    const holderExpiry = (owner: string) =>
      tryKv(() => memberKv.get(owner)).pipe(
        Effect.map((entry) =>
          entry === null || entry.operation !== "PUT" ? 0 : (Either.getOrUndefined(decodeMember(entry.string()))?.expiresAt ?? 0)
        )
      )

    return Leases.of({
      self,
      name: config.processName,
      ttlMs,
      leases: Effect.sync(() => leases.current),
      members: Effect.sync(() => members.current),
      holder: (destinationId) =>
        Effect.map(now, (at) => {
          const held = leases.current.get(destinationId)
          return LeasePolicy.inForce(held, members.current, at) ? held.name : undefined
        }),
      announce: (wants) =>
        Effect.gen(function* () {
          const expiresAt = (yield* now) + ttlMs
          const value = encodeMember({ name: config.processName, expiresAt, wants })
          const write = (revision: number) =>
            tryKv(() => (revision === 0 ? memberKv.create(self, value) : memberKv.update(self, value, revision)))
          memberRevision = yield* write(memberRevision).pipe(
            // Only this process writes its entry: a lost compare-and-set means a write whose answer
            // never came (NATS went away meanwhile) or an entry that aged out. Start from what is stored.
            Effect.catchTag("Lost", () =>
              tryKv(() => memberKv.get(self)).pipe(
                Effect.flatMap((entry) => write(entry === null || entry.operation !== "PUT" ? 0 : entry.revision))
              )
            )
          )
          return expiresAt
        }).pipe(
          Effect.catchTag("Lost", () => Effect.fail(unavailable(`membership entry ${self} is being written by someone else`))),
          // The write and the revision it answers go together.
          Effect.uninterruptible
        ),
      acquire: (destinationId) =>
        Effect.gen(function* () {
          const entry = yield* tryKv(() => leaseKv.get(destinationId))
          const stored =
            entry === null || entry.operation !== "PUT" ? undefined : Either.getOrUndefined(decodeLease(entry.string()))
          const holderExpiredAt = stored === undefined ? 0 : yield* holderExpiry(stored.owner)
          if (stored !== undefined && stored.owner !== self && holderExpiredAt > (yield* now)) return Option.none()
          const revision = yield* tryKv(() =>
            entry === null
              ? leaseKv.create(destinationId, encodeLease(lease))
              : leaseKv.update(destinationId, encodeLease(lease), entry.revision)
          )
          const takenFrom = stored === undefined || entry === null ? undefined : { ...stored, revision: entry.revision }
          return Option.some({ held: { ...lease, revision }, takenFrom })
        }).pipe(Effect.catchTag("Lost", () => Effect.succeedNone)),
      release: (destinationId, held) =>
        tryKv(() => leaseKv.delete(destinationId, { previousSeq: held.revision })).pipe(
          Effect.catchTag("Lost", () => Effect.void)
        ),
      leave: Effect.promise(() => memberKv.delete(self).catch(() => undefined))
    })
  })
)
