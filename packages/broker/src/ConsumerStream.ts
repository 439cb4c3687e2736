/**
 * A JetStream pull consumer as an Effect `Stream`, pulled one request at a time so it can stop
 * without losing anything. A consume() subscription that is closed drops what the server
 * already sent to it: those messages come back only after their ack wait, behind newer ones,
 * which breaks the order of their keys. Here closing stops asking for more and waits for the
 * open pull request to end (filled or expired), so every message the server sent is seen.
 */
import type { Consumer, JsMsg } from "@nats-io/jetstream"
import type { Scope } from "effect"
import { Data, Effect, Exit, Fiber, Queue, Stream } from "effect"

/** The client cannot pull any more (consumer deleted, connection gone); callers restart. */
export class ConsumerEnded extends Data.TaggedError("ConsumerEnded")<{ readonly message: string }> {}

export interface Consuming {
  /** Messages as they arrive, in the order the server sent them; may be run again after an interruption. */
  readonly messages: Stream.Stream<JsMsg>
  /** Fails when pulling fails; never succeeds. */
  readonly ended: Effect.Effect<never, ConsumerEnded>
  /** Stops asking for more once the open pull request ends (what it brings still arrives)… */
  readonly pause: Effect.Effect<void>
  /** …and asks again. */
  readonly resume: Effect.Effect<void>
}

/** How long one pull request stays open at the server: also the longest a close waits. */
export const PULL_EXPIRES_MS = 5_000

/**
 * Pulls until the scope closes. `onArrival` sees each message the moment it is received,
 * before anyone reads `messages`, so an owner can account for it even if it is never read.
 * `abandon`: on close, drop the open pull request at once instead of waiting for it — for
 * owners to whom a message coming back after its ack wait is harmless.
 */
export const open = (
  consumer: Consumer,
  options: {
    readonly maxMessages: number
    readonly onArrival?: (msg: JsMsg) => void
    readonly abandon?: boolean
    /** Start paused: nothing is asked for until `resume`. */
    readonly paused?: boolean
    /** Where the messages go (e.g. one queue for several consumers); a queue of its own by default. */
    readonly into?: Queue.Queue<JsMsg>
  }
): Effect.Effect<Consuming, never, Scope.Scope> =>
  Effect.gen(function* () {
    const queue = options.into ?? (yield* Queue.unbounded<JsMsg>())
    const pulling = yield* Effect.makeLatch(options.paused !== true)
    let stopping = false
    let current: { stop: () => void } | undefined
    const pullOnce = Effect.tryPromise({
      try: async () => {
        const started = Date.now()
        let received = 0
        const batch = await consumer.fetch({ max_messages: options.maxMessages, expires: PULL_EXPIRES_MS })
        current = batch
        try {
          for await (const msg of batch) {
            received += 1
            options.onArrival?.(msg)
            Queue.unsafeOffer(queue, msg)
          }
        } catch (error) {
          // The client gives a fetch up after two missed idle heartbeats — half the pull's
          // expiry each — which on a busy event loop races the server's own end of the pull.
          // The pull is over either way; pulling goes on (a deleted consumer still fails).
          if (!String(error).includes("heartbeats missed")) throw error
        }
        // A pull the server turned down at once (rather than one that waited): do not spin on it.
        if (received === 0 && Date.now() - started < PULL_EXPIRES_MS / 10) {
          await new Promise((resolve) => setTimeout(resolve, PULL_EXPIRES_MS / 10))
        }
      },
      catch: (cause) => new ConsumerEnded({ message: `cannot pull: ${String(cause)}` })
    })
    const puller = yield* Effect.acquireRelease(
      Effect.forkDaemon(
        pulling.await.pipe(
          Effect.zipRight(Effect.suspend(() => (stopping ? Effect.void : pullOnce))),
          Effect.repeat({ while: () => !stopping })
        )
      ),
      (fiber) =>
        Effect.suspend(() => {
          stopping = true
          if (options.abandon) current?.stop()
          // A paused puller waits at the latch: let it through to see that it is stopping.
          return pulling.open.pipe(Effect.zipRight(Fiber.await(fiber)))
        })
    )
    return {
      messages: Stream.fromQueue(queue),
      ended: Fiber.await(puller).pipe(
        Effect.flatMap((exit) => (Exit.isFailure(exit) ? Effect.failCause(exit.cause) : Effect.never))
      ),
      pause: pulling.close,
      resume: pulling.open
    }
  })

/** The messages of a consumer, failing when pulling fails; leftovers simply wait for redelivery. */
export const messages = (
  consumer: Consumer,
  options: { readonly maxMessages: number }
): Stream.Stream<JsMsg, ConsumerEnded> =>
  Stream.unwrapScoped(
    Effect.map(open(consumer, { ...options, abandon: true }), (consuming) => consuming.messages.pipe(Stream.interruptWhen(consuming.ended)))
  )
