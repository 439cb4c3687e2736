/**
 * Waiting for a condition instead of sleeping: tests poll what they expect to become true
 * (a row written, a request received) and fail with a message saying what never happened.
 */
import { Cause, Data, Duration, Effect, Exit, Option, Schedule } from "effect"

/** What a condition returns once it holds: anything but false, 0, "", null or undefined. */
export type Truthy<A> = Exclude<A, false | 0 | "" | null | undefined>

export interface WaitOptions {
  /** Says what was awaited, in the timeout message; a function is asked at the timeout. */
  readonly description?: string | (() => string)
  /** Default 10 seconds. */
  readonly timeoutMs?: number
  /** Default 20 ms. */
  readonly intervalMs?: number
}

/** A waited-for condition never held; `lastFailure` is what the last check threw, if anything. */
export class WaitTimedOut extends Data.TaggedError("WaitTimedOut")<{
  readonly message: string
  readonly lastFailure?: unknown
}> {}

const explain = (description: WaitOptions["description"]): string =>
  description === undefined ? "a condition" : typeof description === "string" ? description : description()

/**
 * Runs `condition` every `intervalMs` until it yields a truthy value, which it returns.
 * A failing check counts as "not yet"; on timeout the last failure is in the error.
 * Sleeps on the live clock: inside `@effect/vitest` use `it.live` / `it.scopedLive`.
 */
export const waitForEffect = <A, E, R>(
  condition: Effect.Effect<A, E, R>,
  options: WaitOptions = {}
): Effect.Effect<Truthy<A>, WaitTimedOut, R> =>
  Effect.suspend(() => {
    const timeoutMs = options.timeoutMs ?? 10_000
    let lastFailure: Option.Option<unknown> = Option.none()
    const attempt = condition.pipe(
      Effect.sandbox,
      Effect.mapError((cause) => Option.some<unknown>(Cause.squash(cause))),
      Effect.filterOrFail(
        (value): value is Truthy<A> => Boolean(value),
        () => Option.none()
      ),
      Effect.tapError((failure) =>
        Effect.sync(() => {
          if (Option.isSome(failure)) lastFailure = failure
        })
      )
    )
    return attempt.pipe(
      // Spaced never gives up: only the timeout below ends the wait.
      Effect.retry(Schedule.spaced(Duration.millis(options.intervalMs ?? 20))),
      Effect.orDie,
      Effect.timeoutFail({
        duration: Duration.millis(timeoutMs),
        onTimeout: () =>
          new WaitTimedOut({
            message:
              `timed out after ${timeoutMs} ms waiting for ${explain(options.description)}` +
              Option.match(lastFailure, {
                onNone: () => "",
                onSome: (error) => ` (last check failed: ${error instanceof Error ? error.message : String(error)})`
              }),
            lastFailure: Option.getOrUndefined(lastFailure)
          })
      })
    )
  })

/** `waitForEffect` for plain async tests; rejects with `WaitTimedOut`. */
export const waitFor = async <A>(condition: () => A | Promise<A>, options: WaitOptions = {}): Promise<Truthy<A>> => {
  const exit = await Effect.runPromiseExit(waitForEffect(Effect.tryPromise({ try: async () => condition(), catch: (error) => error }), options))
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}
