/**
 * A destination's health as a pure state machine (DESIGN.md, "Health state machine"). The
 * actor feeds it what happened, persists the status it returns and records each change with
 * its reason. Pure, so every rule is tested with explicit times; the Effect helpers at the
 * end only add the clock and randomness.
 *
 *   active ──failures ≥ threshold──▶ down ──probe succeeded──▶ recovering ──success streak──▶ active
 *                                     ▲                            │
 *                                     └─────── any failure ────────┘
 *   down ──longer than disableAfterMs──▶ disabled
 *   any ──operator pause──▶ paused ──operator resume──▶ the state it was paused from
 *   any ──operator disable, or 410 Gone──▶ disabled ──operator enable──▶ active
 */
import type { Destination } from "@sluice/protocol"
import { States } from "@sluice/protocol"
import { Clock, Data, Effect, Random, Ref, Schema } from "effect"
import * as RetryPolicy from "./RetryPolicy.js"

type HealthState = States.HealthState

/** What is persisted per destination (NATS KV, as JSON): the state, why, and what the rules count. */
export const HealthStatus = Schema.Struct({
  state: States.HealthState,
  /** When the state was entered (ms since the epoch). */
  since: Schema.Number,
  /** Why the state was entered, as recorded in the history. */
  reason: Schema.String,
  /** Counted failures in a row while `active`. */
  consecutiveFailures: Schema.Int,
  /** Successes in a row while `recovering`. */
  consecutiveSuccesses: Schema.Int,
  /** Probes that failed in this outage: drives the probe back-off. */
  probeAttempt: Schema.Int,
  /** The state a pause returns to; null unless `paused`. */
  resumeTo: Schema.NullOr(States.HealthState),
  /** When this outage began: set on entering `down`, kept through `recovering`, null once `active`. */
  downSince: Schema.NullOr(Schema.Number)
}).annotations({ identifier: "HealthStatus" })
export type HealthStatus = typeof HealthStatus.Type

/** Encodes a status as the JSON stored in the KV bucket. */
export const encode = Schema.encodeSync(Schema.parseJson(HealthStatus))

/** Decodes a status read from the KV bucket. */
export const decode = Schema.decodeUnknownEither(Schema.parseJson(HealthStatus))

/** The status of a destination that was just created. */
export const initial = (now: number): HealthStatus => ({
  state: "active",
  since: now,
  reason: "created",
  consecutiveFailures: 0,
  consecutiveSuccesses: 0,
  probeAttempt: 0,
  resumeTo: null,
  downSince: null
})

/** The status as the admin API shows it. */
export const toHealth = (status: HealthStatus): Destination.Health => ({
  state: status.state,
  since: new Date(status.since).toISOString(),
  reason: status.reason
})

/** What can happen to a destination: attempt and probe results from the actor, operator actions, time passing. */
export type Input = Data.TaggedEnum<{
  /** An event was delivered (2xx). */
  AttemptSucceeded: Record<never, never>
  /** A counted failure: 5xx, 408, a timeout or a connection error. */
  AttemptFailed: { readonly reason: string }
  /** The destination answered 410: it is gone for good. */
  Gone: { readonly reason: string }
  /** The recoverer's attempt at the oldest pending event succeeded while `down`. */
  ProbeSucceeded: Record<never, never>
  ProbeFailed: { readonly reason: string }
  Paused: { readonly by: string }
  Resumed: { readonly by: string }
  Enabled: { readonly by: string }
  Disabled: { readonly by: string; readonly reason: string }
  /** Time passed: lets a destination that stays `down` too long be disabled. */
  Tick: Record<never, never>
}>

/** Constructors and `$match` for inputs. */
export const Input = Data.taggedEnum<Input>()

/** A change of state: what the history records. */
export interface Change {
  readonly from: HealthState
  readonly to: HealthState
  readonly reason: string
}

/**
 * The result of one input. `change` is non-null exactly when the state changed; `status` is
 * the very same object as before when nothing at all changed (nothing to persist).
 */
export interface Transition {
  readonly status: HealthStatus
  readonly change: Change | null
}

const stay = (status: HealthStatus): Transition => ({ status, change: null })

/** Enters `to`: the counters and `resumeTo` start afresh unless `fields` says otherwise. */
const enter = (
  status: HealthStatus,
  to: HealthState,
  reason: string,
  now: number,
  fields: Partial<HealthStatus> = {}
): Transition => ({
  status: {
    ...status,
    state: to,
    since: now,
    reason,
    consecutiveFailures: 0,
    consecutiveSuccesses: 0,
    resumeTo: null,
    ...fields
  },
  change: { from: status.state, to, reason }
})

/** Entering `active` or `disabled` ends an outage. */
const outageOver = { probeAttempt: 0, downSince: null } as const

/** `72h`, `90m`, `30s` or `1500ms`: durations in reasons read as an operator would write them. */
const formatDuration = (ms: number): string =>
  ms % 3_600_000 === 0
    ? `${ms / 3_600_000}h`
    : ms % 60_000 === 0
      ? `${ms / 60_000}m`
      : ms % 1_000 === 0
        ? `${ms / 1_000}s`
        : `${ms}ms`

const attemptSucceeded = (status: HealthStatus, policy: Destination.HealthPolicy, now: number): Transition => {
  switch (status.state) {
    case "active":
      // A success breaks the failure streak.
      return status.consecutiveFailures === 0 ? stay(status) : stay({ ...status, consecutiveFailures: 0 })
    case "recovering": {
      // `successThreshold` successes in a row close the circuit.
      const streak = status.consecutiveSuccesses + 1
      return streak >= policy.successThreshold
        ? enter(status, "active", `recovered: ${streak} consecutive successes`, now, outageOver)
        : stay({ ...status, consecutiveSuccesses: streak })
    }
    default:
      // down, paused, disabled: a request that was in flight when the state changed; it proves
      // nothing about the state the destination is in now (the recoverer's probe does that for `down`).
      return stay(status)
  }
}

const attemptFailed = (
  status: HealthStatus,
  reason: string,
  policy: Destination.HealthPolicy,
  now: number
): Transition => {
  switch (status.state) {
    case "active": {
      // `failureThreshold` counted failures in a row open the circuit; a new outage begins.
      const failures = status.consecutiveFailures + 1
      return failures >= policy.failureThreshold
        ? enter(status, "down", `${failures} consecutive failures (last: ${reason})`, now, {
            probeAttempt: 0,
            downSince: now
          })
        : stay({ ...status, consecutiveFailures: failures })
    }
    case "recovering":
      // Any failure while half-open re-opens the circuit. It counts as one more failed probe
      // and the outage keeps its start, so the back-off keeps growing and the disable timer keeps running.
      return enter(status, "down", `failed while recovering (${reason})`, now, {
        probeAttempt: status.probeAttempt + 1,
        downSince: status.downSince ?? now
      })
    default:
      // down: the circuit is already open and this failure was counted before (a late result);
      // paused, disabled: late results do not change an operator's decision.
      return stay(status)
  }
}

/**
 * The next status after `input` at `now` (ms), and the state change to record if any. The
 * rules, by input:
 * - AttemptSucceeded / AttemptFailed: counted only in `active` and `recovering` (see above);
 *   elsewhere they are late results of requests that were in flight and change nothing.
 * - ProbeSucceeded: `down` → `recovering`. ProbeFailed: stays `down`, `probeAttempt` + 1.
 *   Probe results outside `down` are stale and change nothing.
 * - Tick: `down` for longer than `disableAfterMs` (since the outage began) → `disabled`.
 * - Gone (410): → `disabled` from any other state, late or not: the receiver said it is gone for good.
 * - Paused: → `paused`, remembering the state to resume to; pausing `paused` or `disabled` changes nothing.
 * - Resumed: `paused` → the remembered state. Back in `down` or `recovering` the outage clock
 *   and the probe back-off restart: an operator just looked at it, so probe soon and give it the
 *   full `disableAfterMs` again. Elsewhere nothing to resume.
 * - Enabled: `disabled` → `active` with every counter reset; elsewhere nothing to enable.
 * - Disabled (operator): → `disabled` from any state.
 */
export const transition = (
  status: HealthStatus,
  input: Input,
  policy: Destination.HealthPolicy,
  now: number
): Transition => {
  switch (input._tag) {
    case "AttemptSucceeded":
      return attemptSucceeded(status, policy, now)
    case "AttemptFailed":
      return attemptFailed(status, input.reason, policy, now)
    case "ProbeSucceeded":
      return status.state === "down" ? enter(status, "recovering", "probe succeeded", now) : stay(status)
    case "ProbeFailed":
      return status.state === "down" ? stay({ ...status, probeAttempt: status.probeAttempt + 1 }) : stay(status)
    case "Tick":
      return status.state === "down" && status.downSince !== null && now - status.downSince > policy.disableAfterMs
        ? enter(status, "disabled", `down for more than ${formatDuration(policy.disableAfterMs)}`, now, outageOver)
        : stay(status)
    case "Gone":
      return status.state === "disabled"
        ? stay(status)
        : enter(status, "disabled", `destination answered 410 Gone (${input.reason})`, now, outageOver)
    case "Paused":
      return status.state === "paused" || status.state === "disabled"
        ? stay(status)
        : enter(status, "paused", `paused by ${input.by}`, now, { resumeTo: status.state })
    case "Resumed": {
      if (status.state !== "paused") return stay(status)
      const to = status.resumeTo ?? "active"
      const restart = to === "active" ? outageOver : { probeAttempt: 0, downSince: now }
      return enter(status, to, `resumed by ${input.by}`, now, restart)
    }
    case "Enabled":
      return status.state === "disabled"
        ? enter(status, "active", `enabled by ${input.by}`, now, outageOver)
        : stay(status)
    case "Disabled": {
      if (status.state === "disabled") return stay(status)
      const reason = input.reason === "" ? `disabled by ${input.by}` : `disabled by ${input.by}: ${input.reason}`
      return enter(status, "disabled", reason, now, outageOver)
    }
  }
}

/** Whether the actor delivers events in this state (`active`, or `recovering` at a ramped rate). */
export const deliversEvents = (state: HealthState): boolean => state === "active" || state === "recovering"

/** Whether the recoverer probes in this state (only `down`). */
export const probes = (state: HealthState): boolean => state === "down"

/**
 * Probe timing as a retry policy: doubling from `probeInitialMs` to `probeMaxMs`, a fifth of
 * each delay randomised so destinations that went down together do not probe in lockstep.
 * Probing never gives up by count or age: `disableAfterMs` bounds an outage instead.
 */
const probeRetryPolicy = (policy: Destination.HealthPolicy): Destination.RetryPolicy => ({
  initialMs: policy.probeInitialMs,
  factor: 2,
  maxMs: policy.probeMaxMs,
  jitter: 0.2,
  maxAttempts: Number.POSITIVE_INFINITY,
  maxAgeMs: Number.POSITIVE_INFINITY
})

/** How long the recoverer waits before the next probe, after `probeAttempt` failed ones; `random` in [0, 1). */
export const probeDelay = (policy: Destination.HealthPolicy, probeAttempt: number, random: number): number =>
  RetryPolicy.delayFor(probeRetryPolicy(policy), probeAttempt + 1, random)

/** The slowest a recovering destination is driven: a tenth of its configured rate. */
const minRampFactor = 0.1

/**
 * The fraction of the configured rate to allow: in `recovering` it doubles with each success
 * of the streak and reaches 1 with the success that closes the circuit (with a threshold of 3:
 * 0.25, 0.5, 1), never below a tenth; 1 in every other state. A receiver that just came back
 * is not hit with the whole backlog at once.
 */
export const rampFactor = (status: HealthStatus, policy: Destination.HealthPolicy): number =>
  status.state === "recovering"
    ? Math.min(1, Math.max(minRampFactor, 2 ** (status.consecutiveSuccesses + 1 - policy.successThreshold)))
    : 1

/**
 * Applies `input` at the current time to the status held in `ref`, atomically. Returns the
 * transition so the caller persists the status and records the change.
 */
export const update = (
  ref: Ref.Ref<HealthStatus>,
  input: Input,
  policy: Destination.HealthPolicy
): Effect.Effect<Transition> =>
  Effect.flatMap(Clock.currentTimeMillis, (now) =>
    Ref.modify(ref, (status) => {
      const result = transition(status, input, policy, now)
      return [result, result.status]
    })
  )

/** `probeDelay` with a draw from `Random`: how long the recoverer sleeps before its next probe. */
export const nextProbeDelay = (policy: Destination.HealthPolicy, probeAttempt: number): Effect.Effect<number> =>
  Effect.map(Random.next, (random) => probeDelay(policy, probeAttempt, random))
