/**
 * When to try an event again: exponential back-off with jitter, bounded by a number of
 * attempts and an age. The timing is a pure function of (policy, attempt, random) so tests
 * call it directly; the actor only sleeps or naks for what it returns.
 */
import type { Destination } from "@sluice/protocol"
import { Data, Effect, Random, Schedule, ScheduleDecision, ScheduleInterval } from "effect"

/**
 * The delay in ms before the next attempt, after `attempt` (1-based) attempts failed:
 * `min(maxMs, initialMs * factor^(attempt-1))`, of which the `jitter` fraction is scaled by
 * `random` in [0, 1) — jitter 0 is deterministic, 1 is full jitter.
 */
export const delayFor = (policy: Destination.RetryPolicy, attempt: number, random: number): number => {
  const growth = policy.factor ** (Math.max(1, attempt) - 1)
  // Checked first because 0 × Infinity (a huge growth) would be NaN.
  const base = policy.initialMs === 0 ? 0 : Math.min(policy.maxMs, policy.initialMs * growth)
  return Math.round(base * (1 - policy.jitter + policy.jitter * random))
}

/** What to do with an event whose attempt failed: try again after a delay, or declare it dead. */
export type Step = Data.TaggedEnum<{
  RetryAt: { readonly delayMs: number }
  GiveUp: { readonly reason: string }
}>

/** Constructors and `$match` for steps. */
export const Step = Data.taggedEnum<Step>()

/** Where a failed event stands: attempts made so far, when the first started, now (ms), a random draw. */
export interface Progress {
  readonly attempts: number
  readonly firstAttemptAt: number
  readonly now: number
  readonly random: number
}

/**
 * The next step after a failed attempt. Gives up once `maxAttempts` attempts were made, or
 * when the next attempt would start later than `maxAgeMs` after the first one.
 */
export const nextStep = (policy: Destination.RetryPolicy, progress: Progress): Step => {
  if (progress.attempts >= policy.maxAttempts) {
    return Step.GiveUp({ reason: `maxAttempts reached: ${progress.attempts} of ${policy.maxAttempts} attempts failed` })
  }
  const delayMs = delayFor(policy, progress.attempts, progress.random)
  const age = progress.now + delayMs - progress.firstAttemptAt
  if (age > policy.maxAgeMs) {
    return Step.GiveUp({
      reason: `maxAgeMs exceeded: the next attempt would be ${age} ms after the first, the limit is ${policy.maxAgeMs} ms`
    })
  }
  return Step.RetryAt({ delayMs })
}

interface ScheduleState {
  readonly attempts: number
  readonly firstAttemptAt: number | null
}

/**
 * The same policy as an Effect `Schedule`, for callers that retry in place
 * (`Effect.retry(send, schedule(policy))`). Delays come from `nextStep` with draws from
 * `Random`; the age is counted from the first failure the schedule sees. Outputs each step,
 * so a caller can log why it gave up (`Schedule.tapOutput`).
 */
export const schedule = (policy: Destination.RetryPolicy): Schedule.Schedule<Step, unknown> =>
  Schedule.makeWithState<ScheduleState, unknown, Step>(
    { attempts: 0, firstAttemptAt: null },
    (now, _input, state) =>
      Effect.map(Random.next, (random) => {
        const next = { attempts: state.attempts + 1, firstAttemptAt: state.firstAttemptAt ?? now }
        const step = nextStep(policy, { ...next, now, random })
        const decision = Step.$match(step, {
          RetryAt: ({ delayMs }) => ScheduleDecision.continueWith(ScheduleInterval.after(now + delayMs)),
          GiveUp: () => ScheduleDecision.done
        })
        return [next, step, decision] as const
      })
  )
