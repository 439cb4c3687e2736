/**
 * Transaction ids of batched destinations: one increasing sequence per destination, kept in
 * the NATS KV bucket `sluice_transactions` so a receiver that dedups by id (as Matrix
 * application services do) never sees an id again after a restart. Each destination's actor
 * is the only one drawing from its sequence.
 */
import type { KV } from "@nats-io/kv"
import { Context, Data, Effect, Layer } from "effect"
import * as KvBucket from "./KvBucket.js"
import { Nats } from "./Nats.js"

export const BUCKET = "sluice_transactions"

export class TransactionIdsUnavailable extends Data.TaggedError("TransactionIdsUnavailable")<{
  readonly message: string
}> {}

export class TransactionIds extends Context.Tag("@sluice/broker/TransactionIds")<
  TransactionIds,
  {
    /** The destination's next transaction id, stored before it is returned. */
    readonly next: (destinationId: string) => Effect.Effect<number, TransactionIdsUnavailable>
  }
>() {}

export const layer: Layer.Layer<TransactionIds, TransactionIdsUnavailable, Nats> = Layer.effect(
  TransactionIds,
  Effect.gen(function* () {
    const { js, replicas } = yield* Nats
    const unavailable = (cause: unknown) => new TransactionIdsUnavailable({ message: `transaction ids: ${String(cause)}` })
    const kv: KV = yield* Effect.tryPromise({
      try: () => KvBucket.open(js, BUCKET, { replicas, description: "Sluice: last transaction id per batched destination" }),
      catch: unavailable
    })
    const last = new Map<string, number>()
    // A destination's workers draw concurrently: one draw at a time, so no id is handed out twice.
    const drawing = yield* Effect.makeSemaphore(1)
    return TransactionIds.of({
      next: (destinationId) =>
        Effect.gen(function* () {
          const known =
            last.get(destinationId) ??
            (yield* Effect.tryPromise({ try: () => kv.get(destinationId), catch: unavailable }).pipe(
              Effect.map((entry) => (entry === null || entry.operation !== "PUT" ? 0 : Number(entry.string()) || 0))
            ))
          const id = known + 1
          yield* Effect.tryPromise({ try: () => kv.put(destinationId, String(id)), catch: unavailable })
          last.set(destinationId, id)
          return id
        }).pipe(drawing.withPermits(1))
    })
  })
)
