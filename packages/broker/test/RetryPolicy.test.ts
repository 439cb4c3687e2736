import { describe, expect, it } from "@effect/vitest"
import type { Destination } from "@sluice/protocol"
import { Chunk, Clock, Effect, Exit, Fiber, Random, Schedule, TestClock } from "effect"
import * as RetryPolicy from "../src/RetryPolicy.js"

const policy = (overrides: Partial<Destination.RetryPolicy> = {}): Destination.RetryPolicy => ({
  initialMs: 1_000,
  factor: 2,
  maxMs: 60_000,
  jitter: 0,
  maxAttempts: 10,
  maxAgeMs: 24 * 3_600_000,
  ...overrides
})

describe("RetryPolicy.delayFor", () => {
  it("grows by the factor from the initial delay", () => {
    const p = policy()
    expect([1, 2, 3, 4, 5].map((attempt) => RetryPolicy.delayFor(p, attempt, 0.5))).toEqual([1_000, 2_000, 4_000, 8_000, 16_000])
    const p3 = policy({ initialMs: 500, factor: 3 })
    expect([1, 2, 3].map((attempt) => RetryPolicy.delayFor(p3, attempt, 0))).toEqual([500, 1_500, 4_500])
  })

  it("is capped at maxMs, even for absurd attempt counts", () => {
    const p = policy({ maxMs: 5_000 })
    expect(RetryPolicy.delayFor(p, 4, 0)).toBe(5_000)
    expect(RetryPolicy.delayFor(p, 1_000, 0)).toBe(5_000)
    expect(RetryPolicy.delayFor(policy({ factor: 10, maxMs: 3_600_000 }), 1_000, 0.3)).toBe(3_600_000)
    expect(RetryPolicy.delayFor(policy({ initialMs: 0, factor: 10 }), 1_000, 0.3)).toBe(0)
  })

  it("stays constant with factor 1", () => {
    const p = policy({ factor: 1, initialMs: 250 })
    expect([1, 2, 10].map((attempt) => RetryPolicy.delayFor(p, attempt, 0.9))).toEqual([250, 250, 250])
  })

  it("keeps the jittered delay within [base * (1 - jitter), base]", () => {
    for (const jitter of [0, 0.2, 0.5, 1]) {
      const p = policy({ jitter })
      for (const attempt of [1, 3, 6, 20]) {
        const base = RetryPolicy.delayFor(policy(), attempt, 0)
        for (const random of [0, 0.001, 0.25, 0.5, 0.75, 0.999999]) {
          const delay = RetryPolicy.delayFor(p, attempt, random)
          expect(delay).toBeGreaterThanOrEqual(Math.round(base * (1 - jitter)))
          expect(delay).toBeLessThanOrEqual(base)
        }
      }
    }
  })

  it("applies jitter as base * (1 - j + j * random)", () => {
    expect(RetryPolicy.delayFor(policy({ jitter: 0.2 }), 3, 0)).toBe(3_200)
    expect(RetryPolicy.delayFor(policy({ jitter: 0.2 }), 3, 0.5)).toBe(3_600)
    expect(RetryPolicy.delayFor(policy({ jitter: 1 }), 3, 0.25)).toBe(1_000)
    expect(RetryPolicy.delayFor(policy({ jitter: 1 }), 3, 0)).toBe(0)
  })
})

describe("RetryPolicy.nextStep", () => {
  const at = { firstAttemptAt: 1_000_000, now: 1_000_000, random: 0.5 }

  it("retries after the computed delay", () => {
    expect(RetryPolicy.nextStep(policy(), { ...at, attempts: 3 })).toEqual(RetryPolicy.Step.RetryAt({ delayMs: 4_000 }))
  })

  it("gives up once maxAttempts attempts were made", () => {
    const p = policy({ maxAttempts: 3 })
    expect(RetryPolicy.nextStep(p, { ...at, attempts: 2 })._tag).toBe("RetryAt")
    const step = RetryPolicy.nextStep(p, { ...at, attempts: 3 })
    expect(step._tag).toBe("GiveUp")
    expect(step._tag === "GiveUp" && step.reason).toMatch(/maxAttempts/)
    expect(RetryPolicy.nextStep(policy({ maxAttempts: 1 }), { ...at, attempts: 1 })._tag).toBe("GiveUp")
  })

  it("gives up when the next attempt would start past maxAgeMs", () => {
    const p = policy({ maxAgeMs: 10_000 })
    // 9 s after the first attempt: a 1 s delay lands exactly on the limit, a 2 s one is past it.
    const now = at.firstAttemptAt + 9_000
    expect(RetryPolicy.nextStep(p, { ...at, now, attempts: 1 })).toEqual(RetryPolicy.Step.RetryAt({ delayMs: 1_000 }))
    const step = RetryPolicy.nextStep(p, { ...at, now, attempts: 2 })
    expect(step._tag).toBe("GiveUp")
    expect(step._tag === "GiveUp" && step.reason).toMatch(/maxAgeMs/)
  })

  it("names maxAttempts when both limits are reached", () => {
    const step = RetryPolicy.nextStep(policy({ maxAttempts: 2, maxAgeMs: 0 }), { ...at, attempts: 2 })
    expect(step._tag === "GiveUp" && step.reason).toMatch(/maxAttempts/)
  })
})

describe("RetryPolicy.schedule", () => {
  /** Fails every time, recording the (test) clock at each attempt. */
  const failingAttempts = (times: Array<number>) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      times.push(now)
      return Effect.fail("receiver down" as const)
    })

  it.effect("waits exactly the delays delayFor computes, drawing jitter from Random", () =>
    Effect.gen(function* () {
      const p = policy({ jitter: 0.5, maxAttempts: 5, maxMs: 5_000 })
      const draws: [number, ...Array<number>] = [0.1, 0.9, 0.5, 0.3]
      const times: Array<number> = []
      const fiber = yield* failingAttempts(times).pipe(
        Effect.retry(RetryPolicy.schedule(p)),
        Effect.withRandom(Random.fixed(draws)),
        Effect.fork
      )
      yield* TestClock.adjust(0)
      expect(times).toEqual([0])
      let elapsed = 0
      for (const [index, random] of draws.entries()) {
        const delay = RetryPolicy.delayFor(p, index + 1, random)
        yield* TestClock.adjust(delay - 1)
        expect(times).toHaveLength(index + 1)
        yield* TestClock.adjust(1)
        elapsed += delay
        expect(times).toEqual([...times.slice(0, index + 1), elapsed])
      }
      const exit = yield* Fiber.await(fiber)
      expect(exit).toEqual(Exit.fail("receiver down"))
      expect(times).toHaveLength(p.maxAttempts)
    })
  )

  it.effect("stops when the next attempt would pass maxAgeMs", () =>
    Effect.gen(function* () {
      // Delays 1 s, 2 s, 4 s: attempts at 0, 1 s and 3 s; the next would be at 7 s > 5 s.
      const p = policy({ maxAgeMs: 5_000 })
      const times: Array<number> = []
      const fiber = yield* failingAttempts(times).pipe(Effect.retry(RetryPolicy.schedule(p)), Effect.fork)
      yield* TestClock.adjust(60_000)
      const exit = yield* Fiber.await(fiber)
      expect(exit).toEqual(Exit.fail("receiver down"))
      expect(times).toEqual([0, 1_000, 3_000])
    })
  )

  it.effect("outputs each step, ending with why it gave up", () =>
    Effect.gen(function* () {
      const steps = yield* Schedule.run(RetryPolicy.schedule(policy({ maxAttempts: 4 })), 0, [1, 2, 3, 4, 5, 6])
      expect(Chunk.toReadonlyArray(steps)).toEqual([
        RetryPolicy.Step.RetryAt({ delayMs: 1_000 }),
        RetryPolicy.Step.RetryAt({ delayMs: 2_000 }),
        RetryPolicy.Step.RetryAt({ delayMs: 4_000 }),
        RetryPolicy.Step.GiveUp({ reason: "maxAttempts reached: 4 of 4 attempts failed" })
      ])
    })
  )
})
