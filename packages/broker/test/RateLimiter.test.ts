import { describe, expect, it } from "@effect/vitest"
import type { Destination } from "@sluice/protocol"
import { Clock, Duration, Effect, Fiber, Option, Ref, TestClock } from "effect"
import * as RateLimiter from "../src/RateLimiter.js"
import { maxInWindow } from "../../../test/helpers/windows.js"

const eightPerSecond: Destination.RateLimit = { perSecond: 8, burst: 8 }

/** Reserves `n` slots in a row, all asked for at `now`; returns their start times. */
const reserveAll = (
  n: number,
  limit: Destination.RateLimit | null,
  factor = 1,
  now = 0,
  from = RateLimiter.initial
) => {
  const starts: Array<number> = []
  let state = from
  for (let i = 0; i < n; i++) {
    const slot = RateLimiter.reserve(state, now, limit, factor)
    starts.push(slot.at)
    state = slot.state
  }
  return { starts, state }
}

describe("RateLimiter.reserve", () => {
  it("never puts more than burst starts in one window, and never idles with a backlog", () => {
    const { starts } = reserveAll(100, eightPerSecond)
    expect(maxInWindow(starts, 1_000)).toBe(8)
    expect(starts).toEqual(starts.map((_, i) => Math.floor(i / 8) * 1_000))
    expect(starts[99]).toBe(12_000)
  })

  it("gives the same slots when each caller asks only when its slot is due", () => {
    const starts: Array<number> = []
    let state = RateLimiter.initial
    let now = 0
    for (let i = 0; i < 40; i++) {
      const slot = RateLimiter.reserve(state, now, eightPerSecond, 1)
      now = slot.at
      starts.push(slot.at)
      state = slot.state
    }
    expect(starts).toEqual(reserveAll(40, eightPerSecond).starts)
  })

  it("spaces starts evenly with burst 1", () => {
    expect(reserveAll(5, { perSecond: 8, burst: 1 }).starts).toEqual([0, 125, 250, 375, 500])
    // Not rounded to the ms: 3 per second is exactly one third of a second apart, so a start
    // recorded to the ms is never less than a window after the one before it.
    const thirds = reserveAll(4, { perSecond: 3, burst: 1 }).starts
    thirds.forEach((at, i) => expect(at).toBeCloseTo((i * 1_000) / 3, 9))
    thirds.slice(1).forEach((at, i) => expect(at - thirds[i]!).toBeGreaterThanOrEqual(1_000 / 3))
  })

  it("does not hold back requests that come slower than the limit", () => {
    const first = reserveAll(8, eightPerSecond)
    expect(RateLimiter.reserve(first.state, 1_000, eightPerSecond, 1).at).toBe(1_000)
    expect(RateLimiter.reserve(first.state, 5_000, eightPerSecond, 1).at).toBe(5_000)
  })

  it("a factor of 0.5 halves the throughput and the burst", () => {
    const { starts } = reserveAll(80, eightPerSecond, 0.5)
    expect(starts.filter((t) => t < 10_000)).toHaveLength(40)
    expect(maxInWindow(starts, 1_000)).toBe(4)
    expect(reserveAll(3, { perSecond: 8, burst: 1 }, 0.5).starts).toEqual([0, 250, 500])
  })

  it("a back-off holds every start until it ends and is never shortened", () => {
    const blocked = RateLimiter.blockUntil(RateLimiter.blockUntil(RateLimiter.initial, 5_000), 2_000)
    expect(blocked.blockedUntil).toBe(5_000)
    expect(reserveAll(10, eightPerSecond, 1, 0, blocked).starts).toEqual([...Array(8).fill(5_000), 6_000, 6_000])
    expect(RateLimiter.reserve(blocked, 7_000, eightPerSecond, 1).at).toBe(7_000)
  })

  it("without a limit only a back-off makes a request wait", () => {
    expect(reserveAll(100, null).starts.every((t) => t === 0)).toBe(true)
    expect(RateLimiter.reserve(RateLimiter.blockUntil(RateLimiter.initial, 3_000), 1_000, null, 1).at).toBe(3_000)
  })

  it("hands out slots in call order across a limit change", () => {
    const slow = reserveAll(3, { perSecond: 1, burst: 1 })
    expect(slow.starts).toEqual([0, 1_000, 2_000])
    const fast = reserveAll(3, { perSecond: 100, burst: 100 }, 1, 0, slow.state)
    expect(fast.starts).toEqual([2_000, 2_000, 2_000])
  })
})

describe("RateLimiter.throttle", () => {
  it("halves the rate down to a tenth, counting a burst of 429s during one back-off once", () => {
    let throttle = RateLimiter.throttle(RateLimiter.unthrottled, 0, 1_000)
    expect(throttle).toEqual({ factor: 0.5, since: 1_000 })
    throttle = RateLimiter.throttle(throttle, 500, 2_000)
    expect(throttle).toEqual({ factor: 0.5, since: 2_000 })
    for (const now of [2_000, 3_000, 4_000, 5_000]) throttle = RateLimiter.throttle(throttle, now, now + 1_000)
    expect(throttle.factor).toBe(RateLimiter.minFactor)
  })

  it("recovers by doubling every recoveryStepMs after the back-off ended", () => {
    const throttle = { factor: 0.125, since: 5_000 }
    const step = RateLimiter.recoveryStepMs
    expect([0, 5_000 + step - 1, 5_000 + step, 5_000 + 2 * step, 5_000 + 3 * step, 5_000 + 9 * step].map((now) =>
      RateLimiter.throttleFactor(throttle, now)
    )).toEqual([0.125, 0.125, 0.25, 0.5, 1, 1])
    expect(RateLimiter.throttle(throttle, 5_000 + 2 * step, 0).factor).toBe(0.25)
  })
})

describe("RateLimiter.wallTime", () => {
  it("keeps the wall clock's offset through readings delayed by pauses, and takes a new one when the clock is set", () => {
    const first = RateLimiter.wallTime(undefined, 100.4, 5_000)
    expect(first).toEqual({ wall: 5_000, offset: 4_899.6 })
    // Read 40 ms late: the start is still recorded on the anchored offset.
    expect(RateLimiter.wallTime(first.offset, 1_100.4, 6_040).wall).toBe(6_000)
    // The clock was set back an hour: recorded starts follow it.
    expect(RateLimiter.wallTime(first.offset, 2_100.4, 7_000 - 3_600_000)).toEqual({
      wall: 7_000 - 3_600_000,
      offset: 7_000 - 3_600_000 - 2_100.4
    })
  })
})

describe("RateLimiter.make", () => {
  /** Forks `n` takes; the returned ref counts those that got their slot. */
  const forkTakes = (limiter: RateLimiter.RateLimiter, n: number) =>
    Effect.gen(function* () {
      const done = yield* Ref.make(0)
      const fibers = yield* Effect.forEach(Array.from({ length: n }), () =>
        Effect.fork(Effect.zipRight(limiter.take, Ref.update(done, (k) => k + 1)))
      )
      return { done, fibers }
    })

  it.effect("lets 8 requests start per second at 8/s burst 8", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const { done, fibers } = yield* forkTakes(limiter, 20)
      const counts: Array<number> = []
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust(i === 0 ? 0 : 1_000)
        counts.push(yield* Ref.get(done))
      }
      expect(counts).toEqual([8, 16, 20])
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("take answers the slot each request starts in", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make({ perSecond: 4, burst: 1 })
      const fiber = yield* Effect.fork(Effect.forEach(Array.from({ length: 4 }), () => limiter.take))
      yield* TestClock.adjust(1_000)
      expect(yield* Fiber.join(fiber)).toEqual([0, 250, 500, 750])
    })
  )

  it.effect("a new limit changes the pace of requests already waiting", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const { done, fibers } = yield* forkTakes(limiter, 20)
      yield* TestClock.adjust(500)
      expect(yield* Ref.get(done)).toBe(8)
      yield* limiter.setLimit({ perSecond: 2, burst: 2 })
      yield* TestClock.adjust(500)
      expect(yield* Ref.get(done)).toBe(10)
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(done)).toBe(12)
      yield* limiter.setLimit(null)
      yield* TestClock.adjust(0)
      expect(yield* Ref.get(done)).toBe(20)
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("a 429 holds everything for Retry-After, then goes on at half the rate", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make(eightPerSecond)
      const { done, fibers } = yield* forkTakes(limiter, 20)
      yield* TestClock.adjust(0)
      yield* limiter.throttled(3_000)
      const counts: Array<number> = []
      for (let i = 0; i < 5; i++) {
        yield* TestClock.adjust(1_000)
        counts.push(yield* Ref.get(done))
      }
      expect(counts).toEqual([8, 8, 12, 16, 20])
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("the recovering ramp and a back-off apply at once", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make(eightPerSecond)
      yield* limiter.setFactor(0.25)
      yield* limiter.backOff(2_000)
      const { done, fibers } = yield* forkTakes(limiter, 4)
      yield* TestClock.adjust(1_999)
      expect(yield* Ref.get(done)).toBe(0)
      yield* TestClock.adjust(1)
      expect(yield* Ref.get(done)).toBe(2)
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(done)).toBe(4)
      yield* Fiber.joinAll(fibers)
    }))

  it.effect("serves waiters in call order; an interrupted waiter takes no slot", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make({ perSecond: 8, burst: 1 })
      const started = yield* Ref.make<Array<readonly [number, number]>>([])
      const fibers = yield* Effect.forEach([0, 1, 2, 3, 4], (i) =>
        Effect.fork(
          Effect.zipRight(
            limiter.take,
            Effect.flatMap(Clock.currentTimeMillis, (now) => Ref.update(started, (s) => [...s, [i, now] as const]))
          )
        )
      )
      yield* TestClock.adjust(0)
      yield* Fiber.interrupt(fibers[2]!)
      yield* TestClock.adjust(1_000)
      expect(yield* Ref.get(started)).toEqual([
        [0, 0],
        [1, 125],
        [3, 250],
        [4, 375]
      ])
    }))

  /**
   * A clock as the live one behaves: the monotonic reading has a fraction of a ms, the wall
   * clock runs `wallAheadNanos` ahead of it and reads whole ms, a timer fires on a whole ms,
   * and `pauses` (ms, one per wall-clock reading, then none) is how long the thread stood still
   * before reading the wall clock: a GC pause, or preempted.
   */
  const liveLikeClock = (startNanos: bigint, wallAheadNanos: bigint, pauses: Array<number> = []): Clock.Clock => {
    let nanos = startNanos
    const wallMillis = () => {
      nanos += BigInt((pauses.shift() ?? 0) * 1_000_000)
      return Number((nanos + wallAheadNanos) / 1_000_000n)
    }
    return {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeNanos: () => nanos,
      unsafeCurrentTimeMillis: wallMillis,
      currentTimeNanos: Effect.sync(() => nanos),
      currentTimeMillis: Effect.sync(wallMillis),
      sleep: (duration) =>
        Effect.sync(() => {
          nanos = ((nanos + Duration.toNanos(duration).pipe(Option.getOrThrow)) / 1_000_000n) * 1_000_000n
        })
    }
  }

  /** The wall-clock starts `take` answers for `n` requests in a row at 1 per second. */
  const onePerSecond = (n: number) =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make({ perSecond: 1, burst: 1 })
      return yield* Effect.forEach(Array.from({ length: n }), () => limiter.take)
    })

  const gaps = (times: ReadonlyArray<number>) => times.slice(1).map((at, i) => at - times[i]!)

  it.effect("starts recorded on the wall clock are a full window apart when the clocks' readings fall between ms", () =>
    // The first request comes at 0.9 ms (an idle destination takes its slot at once); a limiter
    // counting whole ms would take the next slot at 1,000.0 — 999.1 ms later, recorded 999 ms later.
    Effect.gen(function* () {
      for (const gap of gaps(yield* onePerSecond(5))) expect(gap).toBeGreaterThanOrEqual(1_000)
    }).pipe(Effect.withClock(liveLikeClock(900_000n, 300_000n))))

  it.effect("a pause between reading the two clocks does not record a start late", () =>
    // Paused 30 ms after taking the first slot: read afresh, the wall clock would record it 30 ms
    // late, and the second start 970 ms after it.
    Effect.gen(function* () {
      expect(gaps(yield* onePerSecond(4))).toEqual([1_000, 1_000, 1_000])
    }).pipe(Effect.withClock(liveLikeClock(0n, 0n, [30]))))

  it.effect("without a limit, take does not wait", () =>
    Effect.gen(function* () {
      const limiter = yield* RateLimiter.make(null)
      yield* Effect.forEach(Array.from({ length: 100 }), () => limiter.take, { concurrency: "unbounded" })
      expect(yield* Clock.currentTimeMillis).toBe(0)
    }))
})

describe("RateLimiters", () => {
  it.effect("an actor restarted in the same process goes on from its predecessor's starts, under the new limit", () =>
    Effect.gen(function* () {
      const limiters = yield* RateLimiter.RateLimiters
      const first = yield* limiters.forDestination("crm", { perSecond: 2, burst: 2 })
      yield* first.take
      yield* first.take
      // The restarted actor's limiter: the two starts of this second count, so the third waits.
      const again = yield* limiters.forDestination("crm", { perSecond: 2, burst: 2 })
      expect(again).toBe(first)
      const third = yield* Effect.fork(again.take)
      yield* TestClock.adjust("999 millis")
      expect(third.unsafePoll()).toBeNull()
      yield* TestClock.adjust("1 millis")
      yield* Fiber.join(third)
      expect(yield* limiters.forDestination("other", null)).not.toBe(first)
    }).pipe(Effect.provide(RateLimiter.layerRegistry))
  )
})

describe("RateLimiter.reserve under a slow-down", () => {
  it("a slow-down right after a burst at full speed never puts more than the limit in one window", () => {
    // 8 starts at once at full speed, then the rate drops to 0.3 (a 429, a recovering ramp): a
    // burst of 2 in windows of 833 ms, which alone would let 2 more into the first second.
    const full = reserveAll(8, eightPerSecond, 1, 0)
    let state = full.state
    const slowed: Array<number> = []
    for (let i = 0; i < 8; i++) {
      const slot = RateLimiter.reserve(state, 0, eightPerSecond, 0.3)
      slowed.push(slot.at)
      state = slot.state
    }
    expect(maxInWindow([...full.starts, ...slowed], 1_000)).toBe(8)
  })
})
