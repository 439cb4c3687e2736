/**
 * A JetStream pull consumer as an Effect `Stream`. Messages arrive through the client's
 * callback into a queue rather than its async iterator: an iterator parked in `next()`
 * keeps a closing scope waiting, a callback subscription stops at once. The queue is
 * bounded by the consumer's `max_ack_pending`, since the server sends no more than that
 * unacknowledged.
 */
import type { Consumer, JsMsg } from "@nats-io/jetstream"
import type { Scope } from "effect"
import { Data, Effect, Queue, Schedule, Stream } from "effect"

/** The client stopped consuming (consumer deleted, connection closed); callers restart. */
export class ConsumerEnded extends Data.TaggedError("ConsumerEnded")<{ readonly message: string }> {}

export interface Consuming {
  /** Messages as they arrive; fails when the client stops consuming on its own. */
  readonly messages: Stream.Stream<JsMsg, ConsumerEnded>
  /**
   * Messages received but not yet taken from `messages`. After the scope closes they are
   * neither acknowledged nor released: the caller releases them together with the ones it
   * holds, in stream order, so redelivery keeps the order of each key.
   */
  readonly unread: Effect.Effect<ReadonlyArray<JsMsg>>
}

/** How long one pull request stays open at the server. */
export const PULL_EXPIRES_MS = 5_000

/**
 * Waits until the server holds no more pull requests of ours. nats-server 2.9 hands messages
 * to a pull request whose subscriber is gone, where they sit unseen until their ack wait
 * ends — so whatever the caller releases next (naks at shutdown) must wait for the pull
 * requests of this consumption to lapse. Bounded by their expiry.
 */
const pullsLapsed = (consumer: Consumer) =>
  Effect.tryPromise(() => consumer.info(false)).pipe(
    Effect.map((info) => info.num_waiting === 0),
    Effect.orElseSucceed(() => true),
    Effect.repeat({ until: (lapsed) => lapsed, schedule: Schedule.spaced("100 millis") }),
    Effect.timeout(PULL_EXPIRES_MS + 1_000),
    Effect.ignore
  )

/** Consumes until the scope closes. */
export const open = (
  consumer: Consumer,
  options: { readonly maxMessages: number }
): Effect.Effect<Consuming, ConsumerEnded, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = yield* Queue.unbounded<JsMsg>()
    const consuming = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          consumer.consume({
            max_messages: options.maxMessages,
            expires: PULL_EXPIRES_MS,
            // A deleted consumer ends the stream, so the owner recreates it rather than waiting forever.
            abort_on_missing_resource: true,
            callback: (msg) => {
              Queue.unsafeOffer(queue, msg)
            }
          }),
        catch: (cause) => new ConsumerEnded({ message: `cannot consume: ${String(cause)}` })
      }),
      (consuming) =>
        Effect.promise(() => consuming.close().then(() => undefined, () => undefined)).pipe(
          Effect.zipRight(pullsLapsed(consumer))
        )
    )
    const ended = Effect.promise(() => consuming.closed()).pipe(
      Effect.flatMap((reason) =>
        Effect.fail(new ConsumerEnded({ message: reason instanceof Error ? reason.message : "consumer closed" }))
      )
    )
    return {
      messages: Stream.fromQueue(queue).pipe(Stream.interruptWhen(ended)),
      unread: Queue.takeAll(queue).pipe(Effect.map((chunk) => Array.from(chunk)))
    }
  })

/** The messages of a consumer whose unread leftovers may simply wait for redelivery. */
export const messages = (
  consumer: Consumer,
  options: { readonly maxMessages: number }
): Stream.Stream<JsMsg, ConsumerEnded> =>
  Stream.unwrapScoped(Effect.map(open(consumer, options), (consuming) => consuming.messages))
