/**
 * React hooks over the admin API: `useApi` loads (and optionally keeps refreshing) what a
 * page shows, interrupting the call when the page goes away; `useAction` runs what an
 * operator's button asks for and says whether it is running, failed or done.
 */
import { Duration, Effect, Fiber, Schedule } from "effect"
import { useCallback, useEffect, useState } from "react"
import type { AdminClient, ApiFailure } from "./api.js"
import { call } from "./api.js"

/**
 * A value from the API as the page shows it: still loading, failed with a message, or there.
 * A refresh that fails keeps the last value and says why in `error`, so an operator still
 * sees the last known state while the API is unreachable.
 */
export type Remote<A> =
  | { readonly _tag: "Loading" }
  | { readonly _tag: "Failed"; readonly message: string }
  | { readonly _tag: "Loaded"; readonly value: A; readonly error?: string }

export const loading = { _tag: "Loading" } as const

const settle = <A>(previous: Remote<A>, next: Remote<A>): Remote<A> =>
  next._tag === "Failed" && previous._tag === "Loaded" ? { ...previous, error: next.message } : next

/**
 * Loads `request` and, with `refreshMs`, again that long after each answer. `request` must be
 * stable (module level or `useCallback`): a new one starts over from Loading.
 */
export const useApi = <A, E extends ApiFailure>(
  request: (client: AdminClient) => Effect.Effect<A, E>,
  options: { readonly refreshMs?: number } = {}
): readonly [Remote<A>, () => void] => {
  const { refreshMs } = options
  const [result, setResult] = useState<{ readonly request: unknown; readonly remote: Remote<A> }>({
    request,
    remote: loading
  })
  const [generation, setGeneration] = useState(0)
  useEffect(() => {
    const load = call(request).pipe(
      Effect.match({
        onFailure: (problem): Remote<A> => ({ _tag: "Failed", message: problem.message }),
        onSuccess: (value): Remote<A> => ({ _tag: "Loaded", value })
      }),
      Effect.andThen((remote) =>
        setResult((previous) => ({
          request,
          remote: settle(previous.request === request ? previous.remote : loading, remote)
        }))
      )
    )
    const fiber = Effect.runFork(
      refreshMs === undefined ? load : Effect.repeat(load, Schedule.spaced(Duration.millis(refreshMs)))
    )
    return () => {
      Effect.runFork(Fiber.interrupt(fiber))
    }
  }, [request, refreshMs, generation])
  const reload = useCallback(() => setGeneration((n) => n + 1), [])
  return [result.request === request ? result.remote : loading, reload]
}

export type ActionState =
  | { readonly _tag: "Idle" }
  | { readonly _tag: "Running" }
  | { readonly _tag: "Failed"; readonly message: string }
  | { readonly _tag: "Done" }

const idle: ActionState = { _tag: "Idle" }

/**
 * One operator action at a time: `run` resolves with the answer, or undefined when the call
 * failed (the state then holds the message for the page).
 */
export const useAction = () => {
  const [state, setState] = useState<ActionState>(idle)
  const run = useCallback(
    <A, E extends ApiFailure>(request: (client: AdminClient) => Effect.Effect<A, E>): Promise<A | undefined> => {
      setState({ _tag: "Running" })
      return Effect.runPromise(
        call(request).pipe(
          Effect.match({
            onFailure: (problem) => {
              setState({ _tag: "Failed", message: problem.message })
              return undefined
            },
            onSuccess: (value) => {
              setState({ _tag: "Done" })
              return value
            }
          })
        )
      )
    },
    []
  )
  const reset = useCallback(() => setState(idle), [])
  return { state, run, reset } as const
}

/** The current time, updated every `intervalMs`: for "3 m ago" and for charts that end at now. */
export const useNow = (intervalMs: number): number => {
  const [now, setNow] = useState(() => Date.now())
  useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), intervalMs)
    return () => window.clearInterval(timer)
  }, [intervalMs])
  return now
}
