/**
 * What each destination lost and has not been told about yet, so its next
 * `sluice.sync_error` event can say how much and over which time range, and the admin API
 * can show it meanwhile. Kept in the NATS KV bucket `sluice_losses` (one entry per
 * destination, updated with compare-and-set) so a restart forgets nothing.
 */
import type { KV } from "@nats-io/kv"
import { Destination } from "@sluice/protocol"
import { Context, Data, Effect, Either, Layer, Schedule, Schema } from "effect"
import * as KvBucket from "./KvBucket.js"
import { Nats } from "./Nats.js"

export const BUCKET = "sluice_losses"

export class LossLedgerUnavailable extends Data.TaggedError("LossLedgerUnavailable")<{ readonly message: string }> {}

/** Why events were lost to a destination. */
export type LossKind = "dead" | "disabled" | "expired"

/** `count` events lost for one reason, published between `since` and `until`. */
export const lost = (kind: LossKind, count: number, since: string, until = since): Destination.LostEvents => ({
  since,
  until,
  dead: kind === "dead" ? count : 0,
  disabled: kind === "disabled" ? count : 0,
  expired: kind === "expired" ? count : 0
})

export class LossLedger extends Context.Tag("@sluice/broker/LossLedger")<
  LossLedger,
  {
    /** Adds losses to what is recorded — new ones, or a report that could not be delivered. */
    readonly add: (destinationId: string, losses: Destination.LostEvents) => Effect.Effect<void, LossLedgerUnavailable>
    /** The losses not yet reported, if any. */
    readonly peek: (destinationId: string) => Effect.Effect<Destination.LostEvents | undefined, LossLedgerUnavailable>
    /** The losses not yet reported, cleared: the caller reports them. */
    readonly take: (destinationId: string) => Effect.Effect<Destination.LostEvents | undefined, LossLedgerUnavailable>
    /** Forgets a removed destination's losses. */
    readonly forget: (destinationId: string) => Effect.Effect<void, LossLedgerUnavailable>
  }
>() {}

/** Adds losses to what is already recorded (pure: the ledger's arithmetic). */
export const combine = (
  current: Destination.LostEvents | undefined,
  more: Destination.LostEvents
): Destination.LostEvents =>
  current === undefined
    ? more
    : {
        since: Date.parse(more.since) < Date.parse(current.since) ? more.since : current.since,
        until: Date.parse(more.until) > Date.parse(current.until) ? more.until : current.until,
        dead: current.dead + more.dead,
        disabled: current.disabled + more.disabled,
        expired: current.expired + more.expired
      }

const Entry = Schema.parseJson(Destination.LostEvents)
const decodeEntry = Schema.decodeUnknownEither(Entry)
const encodeEntry = Schema.encodeSync(Entry)

/** A compare-and-set lost to another writer is tried again on fresh data. */
class Raced extends Data.TaggedError("Raced") {}

export const layer: Layer.Layer<LossLedger, LossLedgerUnavailable, Nats> = Layer.effect(
  LossLedger,
  Effect.gen(function* () {
    const { js, replicas } = yield* Nats
    const unavailable = (cause: unknown) => new LossLedgerUnavailable({ message: `lost-event ledger: ${String(cause)}` })
    const kv: KV = yield* Effect.tryPromise({
      try: () => KvBucket.open(js, BUCKET, { replicas, description: "Sluice: events lost to each destination, not yet reported" }),
      catch: unavailable
    })
    const read = (destinationId: string) =>
      Effect.tryPromise({ try: () => kv.get(destinationId), catch: unavailable }).pipe(
        Effect.map((entry) => ({
          revision: entry?.revision ?? 0,
          value:
            entry === null || entry.operation !== "PUT" ? undefined : Either.getOrUndefined(decodeEntry(entry.string()))
        }))
      )
    /** Writes `next` over what was read at `revision`: create, update or delete. */
    const write = (destinationId: string, revision: number, next: Destination.LostEvents | undefined) =>
      Effect.tryPromise({
        try: async () => {
          if (next === undefined) await kv.delete(destinationId, { previousSeq: revision })
          else if (revision === 0) await kv.create(destinationId, encodeEntry(next))
          else await kv.update(destinationId, encodeEntry(next), revision)
        },
        catch: (cause) => (KvBucket.isConflict(cause) ? new Raced() : unavailable(cause))
      })
    const change = <A>(destinationId: string, f: (current: Destination.LostEvents | undefined) => [A, Destination.LostEvents | undefined]) =>
      read(destinationId).pipe(
        Effect.flatMap(({ revision, value }) => {
          const [result, next] = f(value)
          return next === value ? Effect.succeed(result) : write(destinationId, revision, next).pipe(Effect.as(result))
        }),
        Effect.retry({ while: (error) => error._tag === "Raced", schedule: Schedule.spaced("10 millis") }),
        Effect.catchTag("Raced", (error) => Effect.fail(unavailable(error)))
      )
    return LossLedger.of({
      add: (destinationId, losses) => change(destinationId, (current) => [undefined, combine(current, losses)]),
      peek: (destinationId) => read(destinationId).pipe(Effect.map(({ value }) => value)),
      take: (destinationId) => change(destinationId, (current) => [current, undefined]),
      forget: (destinationId) => Effect.tryPromise({ try: () => kv.purge(destinationId), catch: unavailable })
    })
  })
)
