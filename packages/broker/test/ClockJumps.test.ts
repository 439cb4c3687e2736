/**
 * Clock jumps in retry scheduling (issue 9, fault suite): the wall clock stepped back or
 * forward by hours — an NTP correction, a resumed VM — must neither fire every pending
 * retry at once nor wedge them. Driven with `TestClock`: `setTime` backwards is a real step
 * back; `setTime` forwards (or `adjust`) wakes every sleeper in turn, at its own time, which
 * is also what a long pause of the process looks like.
 *
 * What these cover, by where time is read:
 * - RateLimiter: slots and back-offs are absolute times, so it keeps its own timeline.
 * - RetryPolicy: delays are relative (a step back changes none); the age limit is wall time.
 * - HealthMachine: probe delays are relative and bounded; the outage clock is wall time
 *   (it is shared through NATS KV by every process, so it cannot be a local monotonic one).
 */
import { describe, expect, it } from "@effect/vitest"
import type { Destination } from "@sluice/protocol"
import { Clock, Effect, Fiber, Ref, ScheduleDecision, ScheduleIntervals, TestClock } from "effect"
import * as HealthMachine from "../src/HealthMachine.js"
import * as RateLimiter from "../src/RateLimiter.js"
import * as RetryPolicy from "../src/RetryPolicy.js"
import { maxInWindow } from "../../../test/helpers/windows.js"

const HOUR = 3_600_000
/** A realistic wall clock, so that an hour back is still after the epoch. */
const T0 = Date.parse("2026-11-23T09:00:00Z")

const eightPerSecond: Destination.RateLimit = { perSecond: 8, burst: 8 }

/** Forks `n` takes in call order; `starts` collects the wall-clock time each was granted. */
const forkTakes = (limiter: RateLimiter.RateLimiter, n: number) =>
  Effect.gen(function* () {
    const starts = yield* Ref.make<ReadonlyArray<number>>([])
    const fibers = []
    for (let i = 0; i < n; i++) {
      fibers.push(yield* Effect.fork(Effect.flatMap(limiter.take, (at) => Ref.update(starts, (s) => [...s, at]))))
    }
    return { starts, fibers, done: Effect.map(Ref.get(starts), (s) => s.length) }
  })

describe("RateLimiter under clock jumps", () => {
  it("its timeline absorbs a step back and follows a step forward", () => {
    let timeline = RateLimiter.timelineStart
    const read = (ms: number) => {
      const r = RateLimiter.onTimeline(timeline, ms)
      timeline = r.timeline
      return r.now
    }
    expect([T0, T0 + 500, T0 - HOUR, T0 - HOUR + 200, T0 + 2 * HOUR].map(read)).toEqual([
      T0,
      T0 + 500,
      T0 + 500,
      T0 + 700,
      T0 + 2 * HOUR + HOUR + 500
    ])
  })

  it.effect("a clock set back an hour does not stall the next start for an hour", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const first = yield* forkTakes(limiter, 8)
      yield* TestClock.adjust(0)
      expect(yield* first.done).toBe(8)

      yield* TestClock.setTime(T0 - HOUR)
      const next = yield* forkTakes(limiter, 8)
      yield* TestClock.adjust(999)
      // The window of the first eight is still open: nothing more may start yet…
      expect(yield* next.done).toBe(0)
      yield* TestClock.adjust(1)
      // …and a second later the next eight start, not an hour later.
      expect(yield* Ref.get(next.starts)).toEqual(Array(8).fill(T0 - HOUR + 1_000))
      yield* Fiber.joinAll(next.fibers)
    }))

  it.effect("a 429's back-off and slow-down last as long as asked when the clock is set back", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const limiter = yield* RateLimiter.make(eightPerSecond)
      yield* limiter.throttled(3_000)
      yield* TestClock.setTime(T0 - HOUR)
      const { done, fibers, starts } = yield* forkTakes(limiter, 8)
      yield* TestClock.adjust(2_999)
      expect(yield* done).toBe(0)
      yield* TestClock.adjust(1)
      // Half the rate after the back-off: 4 starts per second, not a tenth for an hour.
      expect(yield* done).toBe(4)
      yield* TestClock.adjust(1_000)
      expect(yield* done).toBe(8)
      expect(maxInWindow(yield* Ref.get(starts), 1_000)).toBe(4)
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("a clock moved forward hours frees one window, not the whole backlog", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const first = yield* forkTakes(limiter, 8)
      yield* TestClock.adjust(0)
      expect(yield* first.done).toBe(8)

      yield* TestClock.setTime(T0 + 5 * HOUR)
      const backlog = yield* forkTakes(limiter, 40)
      yield* TestClock.adjust(0)
      expect(yield* backlog.done).toBe(8)
      yield* TestClock.adjust(4_000)
      expect(yield* backlog.done).toBe(40)
      const starts = yield* Ref.get(backlog.starts)
      expect(maxInWindow(starts, 1_000)).toBe(8)
      expect(starts.at(-1)).toBe(T0 + 5 * HOUR + 4_000)
      yield* Fiber.joinAll(backlog.fibers)
    }))

  it.effect("waiters asleep across a jump forward still start at the limit", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const { done, fibers, starts } = yield* forkTakes(limiter, 100)
      yield* TestClock.adjust(0)
      expect(yield* done).toBe(8)
      yield* TestClock.setTime(T0 + 3 * HOUR)
      expect(yield* done).toBe(100)
      // Each second let eight through, whenever the clock got there: never a storm of 92.
      expect(maxInWindow(yield* Ref.get(starts), 1_000)).toBe(8)
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("take answers the wall-clock time of the start, also after a step back", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const limiter = yield* RateLimiter.make({ perSecond: 1, burst: 1 })
      expect(yield* limiter.take).toBe(T0)
      yield* TestClock.setTime(T0 - HOUR)
      const fiber = yield* Effect.fork(limiter.take)
      yield* TestClock.adjust(1_000)
      // What the actor records and signs with (webhook-timestamp): the clock as it reads now.
      expect(yield* Fiber.join(fiber)).toBe(T0 - HOUR + 1_000)
      expect(yield* Clock.currentTimeMillis).toBe(T0 - HOUR + 1_000)
    }))
})

describe("RetryPolicy under clock jumps", () => {
  const policy: Destination.RetryPolicy = {
    initialMs: 1_000,
    factor: 2,
    maxMs: 60_000,
    jitter: 0,
    maxAttempts: 10,
    maxAgeMs: 24 * HOUR
  }

  /** Steps the schedule at the given clock readings; the delay each step asks for, or "give up". */
  const stepAt = (p: Destination.RetryPolicy, readings: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      const schedule = RetryPolicy.schedule(p)
      let state = schedule.initial
      const out: Array<number | "give up"> = []
      for (const now of readings) {
        const [next, , decision] = yield* schedule.step(now, "failed", state)
        state = next
        out.push(ScheduleDecision.isDone(decision) ? "give up" : ScheduleIntervals.start(decision.intervals) - now)
      }
      return out
    })

  it.effect("a step back keeps each delay as computed: no retry fires early, none is put off", () =>
    Effect.gen(function* () {
      // Failures at T0, +1 s, then the clock is set back an hour, then on at the delays asked for.
      const readings = [T0, T0 + 1_000, T0 + 3_000 - HOUR, T0 + 7_000 - HOUR, T0 + 15_000 - HOUR]
      expect(yield* stepAt(policy, readings)).toEqual([1_000, 2_000, 4_000, 8_000, 16_000])
    }))

  it("a step back to before the first attempt neither gives up nor loses the back-off", () => {
    const step = RetryPolicy.nextStep(policy, { attempts: 4, firstAttemptAt: T0, now: T0 - HOUR, random: 0 })
    expect(step).toEqual(RetryPolicy.Step.RetryAt({ delayMs: 8_000 }))
    // The attempt limit still ends it: a clock going back cannot make an event retry forever.
    expect(RetryPolicy.nextStep(policy, { attempts: 10, firstAttemptAt: T0, now: T0 - HOUR, random: 0 })._tag).toBe("GiveUp")
  })

  it.effect("a step forward past maxAgeMs ends the event with one decision, not a burst of attempts", () =>
    Effect.gen(function* () {
      expect(yield* stepAt(policy, [T0, T0 + 1_000, T0 + 25 * HOUR])).toEqual([1_000, 2_000, "give up"])
    }))

  it.effect("hours passing at once: each retry runs at its own time, and the policy's limits end them", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const times: Array<number> = []
      const failing = Effect.flatMap(Clock.currentTimeMillis, (now) => {
        times.push(now)
        return Effect.fail("receiver down" as const)
      })
      const fiber = yield* Effect.fork(Effect.retry(failing, RetryPolicy.schedule(policy)))
      yield* TestClock.setTime(T0 + 10 * HOUR)
      yield* Fiber.await(fiber)
      // maxAttempts attempts, spaced by the back-off (1, 2, 4 … 60 s), not fired together.
      expect(times).toHaveLength(policy.maxAttempts)
      const gaps = times.slice(1).map((t, i) => t - times[i]!)
      expect(gaps).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9].map((attempt) => RetryPolicy.delayFor(policy, attempt, 0)))
    }))
})

describe("HealthMachine probes and outage clock under clock jumps", () => {
  const health: Destination.HealthPolicy = {
    failureThreshold: 3,
    successThreshold: 3,
    probeInitialMs: 1_000,
    probeMaxMs: HOUR,
    disableAfterMs: 72 * HOUR
  }

  it("probe delays stay within [0.8, 1] × probeMaxMs however many probes failed", () => {
    for (const probeAttempt of [30, 1_000, 1_000_000, Number.MAX_SAFE_INTEGER]) {
      for (const random of [0, 0.5, 0.999999]) {
        const delay = HealthMachine.probeDelay(health, probeAttempt, random)
        expect(Number.isFinite(delay)).toBe(true)
        expect(delay).toBeGreaterThanOrEqual(0.8 * health.probeMaxMs)
        expect(delay).toBeLessThanOrEqual(health.probeMaxMs)
      }
    }
  })

  it.effect("a recoverer asleep through ten hours probes on its back-off, not once per missed interval", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const probes: Array<number> = []
      // The recoverer's loop: sleep the next probe delay, probe (failing), count it.
      const recoverer = Effect.gen(function* () {
        for (let attempt = 0; ; attempt++) {
          yield* Effect.sleep(yield* HealthMachine.nextProbeDelay(health, attempt))
          probes.push(yield* Clock.currentTimeMillis)
        }
      })
      const fiber = yield* Effect.fork(recoverer)
      yield* TestClock.setTime(T0 + 10 * HOUR)
      yield* Fiber.interrupt(fiber)
      // Doubling from 1 s (jitter ≤ 20 %) reaches the hour cap after ~12 probes: about 12 + 9.
      expect(probes.length).toBeGreaterThanOrEqual(15)
      expect(probes.length).toBeLessThanOrEqual(25)
      const gaps = probes.slice(1).map((t, i) => t - probes[i]!)
      expect(gaps.every((gap, i) => gap >= 0.8 * Math.min(health.probeMaxMs, 1_000 * 2 ** (i + 1)))).toBe(true)
    }))

  it("a clock set back does not disable a down destination early, and the outage still ends in a disable", () => {
    const down = { ...HealthMachine.initial(T0), state: "down" as const, downSince: T0, reason: "3 consecutive failures" }
    const tick = HealthMachine.Input.Tick()
    expect(HealthMachine.transition(down, tick, health, T0 - HOUR).change).toBeNull()
    expect(HealthMachine.transition(down, tick, health, T0 + health.disableAfterMs).change).toBeNull()
    expect(HealthMachine.transition(down, tick, health, T0 + health.disableAfterMs + 1).change?.to).toBe("disabled")
  })
})
