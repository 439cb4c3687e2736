import { describe, expect, it } from "@effect/vitest"
import type { Destination, States } from "@sluice/protocol"
import { Clock, Effect, Either, Fiber, Random, Ref, TestClock } from "effect"
import * as HealthMachine from "../src/HealthMachine.js"

const { Input } = HealthMachine
const HOUR = 3_600_000

const policy: Destination.HealthPolicy = {
  failureThreshold: 3,
  successThreshold: 3,
  probeInitialMs: 1_000,
  probeMaxMs: 8_000,
  disableAfterMs: 72 * HOUR
}

/** A status in `state` entered at t=0, with `fields` on top. */
const inState = (
  state: States.HealthState,
  fields: Partial<HealthMachine.HealthStatus> = {}
): HealthMachine.HealthStatus => ({
  ...HealthMachine.initial(0),
  state,
  reason: `was ${state}`,
  ...fields
})

const down = inState("down", { probeAttempt: 2, downSince: 0 })
const recovering = inState("recovering", { probeAttempt: 2, downSince: 0, consecutiveSuccesses: 1 })
const paused = (resumeTo: States.HealthState, fields: Partial<HealthMachine.HealthStatus> = {}) =>
  inState("paused", { resumeTo, ...fields })
const disabled = inState("disabled")

/** Feeds inputs one after another at the given times. */
const run = (status: HealthMachine.HealthStatus, steps: ReadonlyArray<readonly [HealthMachine.Input, number]>) =>
  steps.reduce<{ status: HealthMachine.HealthStatus; changes: Array<HealthMachine.Change> }>(
    (acc, [input, now]) => {
      const result = HealthMachine.transition(acc.status, input, policy, now)
      return { status: result.status, changes: result.change ? [...acc.changes, result.change] : acc.changes }
    },
    { status, changes: [] }
  )

interface Row {
  readonly name: string
  readonly from: HealthMachine.HealthStatus
  readonly input: HealthMachine.Input
  readonly now?: number
  /** The resulting state and the recorded reason, or `null` when the state must not change. */
  readonly to: readonly [States.HealthState, string] | null
  readonly fields?: Partial<HealthMachine.HealthStatus>
}

const active = inState("active")
const admin = { by: "admin" }
const failed = (reason: string) => Input.AttemptFailed({ reason })
/** One destination in each state, for the rules that hold from every state. */
const sample = { active, down, recovering, paused: paused("down"), disabled } as const

const rows: ReadonlyArray<Row> = [
  // active
  {
    name: "active: a failure below the threshold is counted",
    from: active,
    input: failed("HTTP 503"),
    to: null,
    fields: { consecutiveFailures: 1 }
  },
  {
    name: "active: the threshold-th consecutive failure opens the circuit",
    from: inState("active", { consecutiveFailures: 2 }),
    input: failed("HTTP 503"),
    now: 500,
    to: ["down", "3 consecutive failures (last: HTTP 503)"],
    fields: { since: 500, downSince: 500, probeAttempt: 0, consecutiveFailures: 0 }
  },
  {
    name: "active: a success resets the failure count",
    from: inState("active", { consecutiveFailures: 2 }),
    input: Input.AttemptSucceeded(),
    to: null,
    fields: { consecutiveFailures: 0 }
  },
  { name: "active: a success with no failures to reset changes nothing", from: active, input: Input.AttemptSucceeded(), to: null },
  { name: "active: stale probe results are ignored", from: active, input: Input.ProbeFailed({ reason: "timeout" }), to: null },
  { name: "active: tick does nothing", from: active, input: Input.Tick(), now: 100 * HOUR, to: null },
  { name: "active: resume does nothing", from: active, input: Input.Resumed(admin), to: null },
  { name: "active: enable does nothing", from: active, input: Input.Enabled(admin), to: null },
  // down
  {
    name: "down: a probe success half-opens",
    from: down,
    input: Input.ProbeSucceeded(),
    now: 9_000,
    to: ["recovering", "probe succeeded"],
    fields: { probeAttempt: 2, downSince: 0, since: 9_000 }
  },
  {
    name: "down: a probe failure grows the back-off",
    from: down,
    input: Input.ProbeFailed({ reason: "HTTP 502" }),
    to: null,
    fields: { probeAttempt: 3 }
  },
  { name: "down: a late failure is not counted again", from: down, input: failed("HTTP 500"), to: null },
  { name: "down: a late success does not close the circuit", from: down, input: Input.AttemptSucceeded(), to: null },
  { name: "down: tick before disableAfterMs does nothing", from: down, input: Input.Tick(), now: 72 * HOUR, to: null },
  {
    name: "down: tick after disableAfterMs disables",
    from: down,
    input: Input.Tick(),
    now: 72 * HOUR + 1,
    to: ["disabled", "down for more than 72h"],
    fields: { probeAttempt: 0, downSince: null }
  },
  // recovering
  {
    name: "recovering: successes below the threshold build the streak",
    from: recovering,
    input: Input.AttemptSucceeded(),
    to: null,
    fields: { consecutiveSuccesses: 2 }
  },
  {
    name: "recovering: the success streak closes the circuit",
    from: inState("recovering", { probeAttempt: 2, downSince: 0, consecutiveSuccesses: 2 }),
    input: Input.AttemptSucceeded(),
    to: ["active", "recovered: 3 consecutive successes"],
    fields: { probeAttempt: 0, downSince: null, consecutiveSuccesses: 0 }
  },
  {
    name: "recovering: any failure re-opens, the probe back-off keeps growing and the outage keeps its start",
    from: recovering,
    input: failed("HTTP 500"),
    now: 20_000,
    to: ["down", "failed while recovering (HTTP 500)"],
    fields: { probeAttempt: 3, downSince: 0, consecutiveSuccesses: 0 }
  },
  { name: "recovering: stale probe results are ignored", from: recovering, input: Input.ProbeSucceeded(), to: null },
  { name: "recovering: a long outage is not disabled while it delivers", from: recovering, input: Input.Tick(), now: 100 * HOUR, to: null },
  // pause and resume, from every state
  ...(["active", "down", "recovering"] as const).map((state): Row => ({
    name: `${state}: pausing remembers the state`,
    from: sample[state],
    input: Input.Paused(admin),
    now: 700,
    to: ["paused", "paused by admin"],
    fields: { resumeTo: state, since: 700 }
  })),
  {
    name: "paused: pausing again keeps the original resumeTo",
    from: paused("down"),
    input: Input.Paused({ by: "ops" }),
    to: null,
    fields: { resumeTo: "down" }
  },
  { name: "disabled: pausing does nothing", from: disabled, input: Input.Paused(admin), to: null },
  {
    name: "paused: resume to active",
    from: paused("active"),
    input: Input.Resumed(admin),
    to: ["active", "resumed by admin"],
    fields: { resumeTo: null }
  },
  {
    name: "paused: resume to down restarts the outage clock and probing",
    from: paused("down", { probeAttempt: 5, downSince: 0 }),
    input: Input.Resumed(admin),
    now: 80 * HOUR,
    to: ["down", "resumed by admin"],
    fields: { resumeTo: null, probeAttempt: 0, downSince: 80 * HOUR }
  },
  {
    name: "paused: resume to recovering",
    from: paused("recovering", { probeAttempt: 2, downSince: 0 }),
    input: Input.Resumed(admin),
    now: 1_000,
    to: ["recovering", "resumed by admin"],
    fields: { resumeTo: null, consecutiveSuccesses: 0, downSince: 1_000 }
  },
  // late results while paused
  { name: "paused: a late success does not unpause", from: paused("down"), input: Input.AttemptSucceeded(), to: null },
  { name: "paused: a late failure is not counted", from: paused("active"), input: failed("HTTP 500"), to: null },
  { name: "paused: a late probe success does not unpause", from: paused("down"), input: Input.ProbeSucceeded(), to: null },
  {
    name: "paused: a long pause of an outage is not disabled",
    from: paused("down", { downSince: 0 }),
    input: Input.Tick(),
    now: 100 * HOUR,
    to: null
  },
  { name: "paused: enable does nothing", from: paused("active"), input: Input.Enabled(admin), to: null },
  // disabled
  {
    name: "disabled: enable starts afresh",
    from: disabled,
    input: Input.Enabled(admin),
    now: 3_000,
    to: ["active", "enabled by admin"],
    fields: { since: 3_000 }
  },
  { name: "disabled: resume does nothing", from: disabled, input: Input.Resumed(admin), to: null },
  { name: "disabled: late results do nothing", from: disabled, input: Input.AttemptSucceeded(), to: null },
  { name: "disabled: disabling again does nothing", from: disabled, input: Input.Disabled({ ...admin, reason: "again" }), to: null },
  { name: "disabled: a late 410 does nothing", from: disabled, input: Input.Gone({ reason: "HTTP 410" }), to: null },
  // operator disable and 410, from every other state
  ...(["active", "down", "recovering", "paused"] as const).flatMap((state): Array<Row> => {
    const cleared = { resumeTo: null, probeAttempt: 0, downSince: null }
    return [
      {
        name: `${state}: operator disable`,
        from: sample[state],
        input: Input.Disabled({ ...admin, reason: "decommissioned" }),
        to: ["disabled", "disabled by admin: decommissioned"],
        fields: cleared
      },
      {
        name: `${state}: 410 Gone disables`,
        from: sample[state],
        input: Input.Gone({ reason: "HTTP 410" }),
        to: ["disabled", "destination answered 410 Gone (HTTP 410)"],
        fields: cleared
      }
    ]
  })
]

describe("HealthMachine.transition", () => {
  it.each(rows)("$name", ({ fields, from, input, now, to }) => {
    const result = HealthMachine.transition(from, input, policy, now ?? 1_000)
    if (to === null) {
      expect(result.change).toBeNull()
      expect(result.status.state).toBe(from.state)
      expect(result.status.since).toBe(from.since)
      expect(result.status.reason).toBe(from.reason)
      if (fields === undefined) expect(result.status).toBe(from)
    } else {
      expect(result.change).toEqual({ from: from.state, to: to[0], reason: to[1] })
      expect(result.status).toMatchObject({ state: to[0], reason: to[1], since: now ?? 1_000 })
    }
    if (fields !== undefined) expect(result.status).toMatchObject(fields)
  })

  it("a full outage: down, probes, recovering, relapse, recovery", () => {
    const failure = Input.AttemptFailed({ reason: "HTTP 503" })
    const { changes, status } = run(HealthMachine.initial(0), [
      [failure, 1_000],
      [Input.AttemptSucceeded(), 2_000],
      [failure, 3_000],
      [failure, 4_000],
      [failure, 5_000],
      [failure, 5_500], // late, already down
      [Input.ProbeFailed({ reason: "HTTP 503" }), 6_000],
      [Input.ProbeSucceeded(), 8_000],
      [Input.AttemptSucceeded(), 8_100],
      [failure, 8_200],
      [Input.ProbeSucceeded(), 12_000],
      [Input.AttemptSucceeded(), 12_100],
      [Input.AttemptSucceeded(), 12_200],
      [Input.AttemptSucceeded(), 12_300]
    ])
    expect(changes).toEqual([
      { from: "active", to: "down", reason: "3 consecutive failures (last: HTTP 503)" },
      { from: "down", to: "recovering", reason: "probe succeeded" },
      { from: "recovering", to: "down", reason: "failed while recovering (HTTP 503)" },
      { from: "down", to: "recovering", reason: "probe succeeded" },
      { from: "recovering", to: "active", reason: "recovered: 3 consecutive successes" }
    ])
    expect(status).toEqual({ ...HealthMachine.initial(12_300), reason: "recovered: 3 consecutive successes" })
  })

  it("a relapse keeps the outage's start, so a flapping destination is still disabled in time", () => {
    const { changes } = run(inState("down", { downSince: 0 }), [
      [Input.ProbeSucceeded(), 70 * HOUR],
      [Input.AttemptFailed({ reason: "timeout" }), 71 * HOUR],
      [Input.Tick(), 72 * HOUR + 1]
    ])
    expect(changes.map((c) => c.to)).toEqual(["recovering", "down", "disabled"])
  })

  it("an operator disable without a reason names who did it", () => {
    const result = HealthMachine.transition(inState("active"), Input.Disabled({ by: "ops", reason: "" }), policy, 1)
    expect(result.change?.reason).toBe("disabled by ops")
  })

  it("formats the disable limit as an operator would write it", () => {
    const reasonFor = (disableAfterMs: number) =>
      HealthMachine.transition(down, Input.Tick(), { ...policy, disableAfterMs }, disableAfterMs + 1).change?.reason
    expect(reasonFor(90 * 60_000)).toBe("down for more than 90m")
    expect(reasonFor(45_000)).toBe("down for more than 45s")
    expect(reasonFor(1_500)).toBe("down for more than 1500ms")
  })
})

describe("HealthMachine helpers", () => {
  it("tells which states deliver and which probe", () => {
    const states = ["active", "down", "recovering", "paused", "disabled"] as const
    expect(states.filter(HealthMachine.deliversEvents)).toEqual(["active", "recovering"])
    expect(states.filter(HealthMachine.probes)).toEqual(["down"])
  })

  it("probe delays double from probeInitialMs and are capped at probeMaxMs", () => {
    const delays = [0, 1, 2, 3, 4, 50].map((n) => HealthMachine.probeDelay(policy, n, 1))
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 8_000, 8_000])
    for (const n of [0, 3, 10]) {
      const base = Math.min(8_000, 1_000 * 2 ** n)
      expect(HealthMachine.probeDelay(policy, n, 0)).toBe(base * 0.8)
    }
  })

  it("ramps the rate up with the success streak while recovering", () => {
    const ramp = (consecutiveSuccesses: number, successThreshold = 3) =>
      HealthMachine.rampFactor(inState("recovering", { consecutiveSuccesses }), { ...policy, successThreshold })
    expect([0, 1, 2].map((n) => ramp(n))).toEqual([0.25, 0.5, 1])
    expect(ramp(0, 1)).toBe(1)
    expect(ramp(0, 20)).toBe(0.1)
    expect(ramp(18, 20)).toBe(0.5)
    for (const state of ["active", "down", "paused", "disabled"] as const) {
      expect(HealthMachine.rampFactor(inState(state), policy)).toBe(1)
    }
  })

  it("a status survives the KV round trip", () => {
    const status = paused("down", { probeAttempt: 4, downSince: 123 })
    expect(HealthMachine.decode(HealthMachine.encode(status))).toEqual(Either.right(status))
    expect(Either.isLeft(HealthMachine.decode(`{"state":"sleeping"}`))).toBe(true)
  })

  it("shows the status as the admin API's health", () => {
    expect(HealthMachine.toHealth(inState("down", { since: Date.UTC(2026, 0, 2, 3, 4, 5), reason: "x" }))).toEqual({
      state: "down",
      since: "2026-01-02T03:04:05.000Z",
      reason: "x"
    })
  })
})

describe("HealthMachine with the clock", () => {
  /**
   * A recoverer in miniature: while the destination is down, wait the probe delay, tick,
   * and probe with `probe` (true: the destination answered).
   */
  const recoverer = (
    ref: Ref.Ref<HealthMachine.HealthStatus>,
    probe: Effect.Effect<boolean>,
    health: Destination.HealthPolicy = policy
  ) =>
    Effect.gen(function* () {
      for (;;) {
        const status = yield* Ref.get(ref)
        if (!HealthMachine.probes(status.state)) return status
        yield* Effect.sleep(yield* HealthMachine.nextProbeDelay(health, status.probeAttempt))
        const { status: ticked } = yield* HealthMachine.update(ref, Input.Tick(), health)
        if (!HealthMachine.probes(ticked.state)) return ticked
        const ok = yield* probe
        const result = ok ? Input.ProbeSucceeded() : Input.ProbeFailed({ reason: "HTTP 503" })
        yield* HealthMachine.update(ref, result, health)
      }
    })

  it.effect("probes on a growing, capped schedule until the destination answers", () =>
    Effect.gen(function* () {
      const ref = yield* Ref.make(inState("down", { downSince: 0 }))
      const probedAt = yield* Ref.make<Array<number>>([])
      // The destination answers the 7th probe.
      const probe = Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(probedAt, (ts): [boolean, Array<number>] => [ts.length + 1 >= 7, [...ts, now]])
      )
      const fiber = yield* Effect.fork(recoverer(ref, probe))
      // Probe delays: 1, 2, 4, 8, 8, 8, 8 s (random 1: no jitter taken off).
      const expected = [1_000, 3_000, 7_000, 15_000, 23_000, 31_000, 39_000]
      for (const at of expected) {
        yield* TestClock.setTime(at - 1)
        expect((yield* Ref.get(probedAt)).length).toBe(expected.indexOf(at))
        yield* TestClock.setTime(at)
      }
      const final = yield* Fiber.join(fiber)
      expect(yield* Ref.get(probedAt)).toEqual(expected)
      expect(final).toMatchObject({ state: "recovering", probeAttempt: 6, since: 39_000 })
    }).pipe(Effect.withRandom(Random.fixed([1]))))

  it.effect("disables a destination that stays down longer than disableAfterMs", () =>
    Effect.gen(function* () {
      const ref = yield* Ref.make(inState("down", { downSince: 0 }))
      // Probing at most hourly keeps the number of simulated sleeps small.
      const fiber = yield* Effect.fork(recoverer(ref, Effect.succeed(false), { ...policy, probeMaxMs: HOUR }))
      yield* TestClock.adjust(72 * HOUR)
      expect((yield* Ref.get(ref)).state).toBe("down")
      yield* TestClock.adjust(HOUR)
      const final = yield* Fiber.join(fiber)
      expect(final).toMatchObject({ state: "disabled", reason: "down for more than 72h" })
    }).pipe(Effect.withRandom(Random.fixed([1]))))
})
