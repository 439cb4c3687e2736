/**
 * "Never over the limit in any window, never idle when there is a backlog." A rate limit
 * `{ perSecond, burst }` allows at most `burst` request starts in any sliding window of
 * `burst / perSecond` seconds: 8/s burst 8 is at most 8 starts in any one second, 8/s burst 1
 * is one start every 125 ms. That is stricter than a token bucket (which lets rate + burst
 * through in the first second) and is what receivers that allow "8 calls per second" mean.
 * The pure core computes start slots; the limiter sleeps for them on the `Clock`, counting
 * time on a timeline that only moves forward (`Timeline`), so a wall-clock jump neither
 * stalls a destination for the length of the jump nor lets a backlog through at once.
 */
import type { Destination } from "@sluice/protocol"
import { Clock, Context, Deferred, Effect, Exit, Layer, Ref } from "effect"

type RateLimit = Destination.RateLimit

/** What the window rule needs to place the next start, and any back-off in force. */
export interface State {
  /** The latest starts (ms), oldest first: at most the configured `burst` of them. */
  readonly starts: ReadonlyArray<number>
  /** Nothing starts before this (ms): a Retry-After back-off. */
  readonly blockedUntil: number
}

/** A limiter through which nothing has started yet. */
export const initial: State = { starts: [], blockedUntil: 0 }

/**
 * The limit with `factor` applied: the rate is scaled and the burst shrinks with it (to at
 * least 1), so a slowed-down receiver also sees smaller clumps of requests.
 */
const scaled = (limit: RateLimit, factor: number) => {
  const burst = Math.max(1, Math.floor(limit.burst * factor))
  return { burst, windowMs: (burst * 1_000) / (limit.perSecond * factor) }
}

/**
 * Takes the next start slot: the earliest time ≥ `now` at which a request may start without
 * putting more than `burst` starts in one window, and not before a back-off ends. Times are
 * not rounded: a slot rounded to the ms could be up to 1 ms less than a window after the
 * start it is spaced from, and so could the wall-clock starts recorded for the two.
 * Slots never go back in time, so they are handed out in call order even across limit
 * changes. `factor` (0 < factor ≤ 1) slows the limit down (429 back-off, recovering ramp); a
 * `null` limit only honours back-offs. Keeps the last `burst` starts: after the burst is
 * raised, the first window under the new limit is judged on the fewer starts remembered.
 */
export const reserve = (
  state: State,
  now: number,
  limit: RateLimit | null,
  factor: number
): { readonly at: number; readonly state: State } => {
  if (limit === null) return { at: Math.max(now, state.blockedUntil), state }
  const { starts } = state
  // Slowed down or not, the configured limit holds too: right after a slow-down the scaled
  // window alone would not count the starts made at full speed just before it.
  const earliest = (rule: { readonly burst: number; readonly windowMs: number }) =>
    starts.length >= rule.burst ? starts[starts.length - rule.burst]! + rule.windowMs : now
  const at = Math.max(now, state.blockedUntil, starts.at(-1) ?? now, earliest(scaled(limit, factor)), earliest(scaled(limit, 1)))
  const kept = starts.slice(Math.max(0, starts.length - limit.burst + 1))
  return { at, state: { ...state, starts: [...kept, at] } }
}

/** Nothing starts before `untilMs` (a 429/503 Retry-After); an earlier back-off is never shortened. */
export const blockUntil = (state: State, untilMs: number): State => ({
  ...state,
  blockedUntil: Math.max(state.blockedUntil, untilMs)
})

/** A slow-down after a 429 (or 503 with Retry-After): the factor it imposes and when it starts to wear off. */
export interface Throttle {
  readonly factor: number
  /** When the back-off ends (ms); recovery is counted from then. */
  readonly since: number
}

/** No slow-down. */
export const unthrottled: Throttle = { factor: 1, since: 0 }

/** The slowest a factor drives a destination: a tenth of its rate. */
export const minFactor = 0.1

/** How long without another throttle doubles the factor back towards 1. */
export const recoveryStepMs = 10_000

/** The throttle's factor at `now`: it doubles every `recoveryStepMs` after its back-off ended, up to 1. */
export const throttleFactor = (throttle: Throttle, now: number): number =>
  Math.min(1, throttle.factor * 2 ** Math.floor(Math.max(0, now - throttle.since) / recoveryStepMs))

/**
 * The throttle after the receiver asked to back off until `untilMs`: the rate halves (down to
 * `minFactor`). A throttle during the back-off of the previous one only extends it: requests
 * that were in flight together answer 429 together, and that is one signal, not several.
 */
export const throttle = (current: Throttle, now: number, untilMs: number): Throttle =>
  now < current.since
    ? { factor: current.factor, since: Math.max(current.since, untilMs) }
    : { factor: Math.max(minFactor, throttleFactor(current, now) / 2), since: untilMs }

/**
 * The limiter's own time: ms that never go back. Remembered starts and back-offs are
 * absolute times, so a clock set back by an hour would otherwise put every next slot an
 * hour ahead (the destination stalls for an hour) and leave a 429's slow-down in force for
 * as long. A step back is counted as no time passing: it moves `skew`, not the timeline.
 */
export interface Timeline {
  /** The latest clock reading (ms). */
  readonly last: number
  /** What steps back have taken off the clock so far (ms): timeline time = reading + skew. */
  readonly skew: number
}

/** A timeline that has not read the clock yet. */
export const timelineStart: Timeline = { last: Number.NEGATIVE_INFINITY, skew: 0 }

/** Reads `reading` (ms) onto the timeline: the time to use, never less than the last one. */
export const onTimeline = (timeline: Timeline, reading: number): { readonly now: number; readonly timeline: Timeline } => {
  const skew = reading < timeline.last ? timeline.skew + (timeline.last - reading) : timeline.skew
  return { now: reading + skew, timeline: { last: reading, skew } }
}

/** How far the wall clock may stray from the limiter's anchored offset before it counts as set. */
export const reanchorAfterMs = 1_000

/**
 * The wall-clock time (ms since the epoch) of the timeline's `now`: `now` plus an offset kept
 * from the first reading, so that recorded starts are exactly as far apart as the limiter
 * spaced them. Reading the wall clock afresh for each start would record a start late by any
 * pause between the two readings (a GC pause, the thread preempted: tens of ms under load),
 * and the next start closer to it than the window. The offset is measured again when the wall
 * clock reads more than `reanchorAfterMs` away from it, which only setting the clock does.
 */
export const wallTime = (
  offset: number | undefined,
  now: number,
  wallReading: number
): { readonly wall: number; readonly offset: number } => {
  const measured = wallReading - now
  const kept = offset !== undefined && Math.abs(measured - offset) <= reanchorAfterMs ? offset : measured
  return { wall: Math.floor(now + kept), offset: kept }
}

/** One destination's rate limiter; its settings change while it runs (PATCH, health, 429s). */
export interface RateLimiter {
  /**
   * Waits until the next request may start and takes that slot, returning its wall-clock
   * time (ms since the epoch, `wallTime`): the start to record and sign, as far from the
   * others as the limit spaced them. Waiters are served strictly in call order; one
   * interrupted while waiting takes no slot.
   */
  readonly take: Effect.Effect<number>
  /** A new limit (a PATCH): applies to every request that has not started yet. */
  readonly setLimit: (limit: RateLimit | null) => Effect.Effect<void>
  /** Scales the rate by `factor` (clamped to [minFactor, 1]): the recovering ramp. */
  readonly setFactor: (factor: number) => Effect.Effect<void>
  /** Nothing starts before `untilMs` (ms since the epoch). */
  readonly backOff: (untilMs: number) => Effect.Effect<void>
  /**
   * The receiver answered 429 (or 503 with Retry-After): nothing starts for `retryAfterMs`,
   * and the rate halves, recovering by doubling every `recoveryStepMs` without another one.
   */
  readonly throttled: (retryAfterMs: number) => Effect.Effect<void>
}

interface Settings {
  readonly limit: RateLimit | null
  readonly factor: number
  readonly throttle: Throttle
  readonly state: State
  /** Completed on every settings change, so a waiter sleeping towards a slot recomputes it. */
  readonly changed: Deferred.Deferred<void>
}

/**
 * A limiter starting with `limit` (`null`: no limit, only back-offs). Only the waiter at the
 * head of the line sleeps towards a slot, and recomputes it whenever the settings change; the
 * others wait for their turn, so a new limit or a back-off applies to all of them at once.
 * Time is read from `Clock.currentTimeNanos` (monotonic in the live clock: the wall clock's
 * jumps do not reach it) through a `Timeline` (which absorbs a `TestClock` set back).
 */
export const make = (limit: RateLimit | null): Effect.Effect<RateLimiter> =>
  Effect.gen(function* () {
    let timeline = timelineStart
    let wallOffset: number | undefined
    /** The timeline's time now, in ms to the µs (whole ms would let slots fall short of a window). */
    const readTimeline = (clock: Clock.Clock) => {
      const read = onTimeline(timeline, Number(clock.unsafeCurrentTimeNanos() / 1_000n) / 1_000)
      timeline = read.timeline
      return read.now
    }
    const monotonicNow = Effect.clockWith((clock) => Effect.sync(() => readTimeline(clock)))
    const settings = yield* Ref.make<Settings>({
      limit,
      factor: 1,
      throttle: unthrottled,
      state: initial,
      changed: yield* Deferred.make<void>()
    })
    const served = yield* Deferred.make<void>()
    yield* Deferred.succeed(served, undefined)
    // The turn of the latest caller: each waiter's turn comes when its predecessor's ends (a queue lock).
    const lastTurn = yield* Ref.make(served)

    const change = (f: (current: Settings, now: number) => Settings) =>
      Effect.gen(function* () {
        const now = yield* monotonicNow
        const changed = yield* Deferred.make<void>()
        const previous = yield* Ref.modify(settings, (current) => [current.changed, { ...f(current, now), changed }])
        yield* Deferred.succeed(previous, undefined)
      })

    /**
     * Either the slot taken — with the wall-clock time it was taken at (`wallTime`) — or how
     * long to sleep towards it unless the settings change first.
     */
    type Wait = { readonly wall: number } | { readonly ms: number; readonly changed: Deferred.Deferred<void> }
    const slot = Effect.clockWith((clock) =>
      Ref.modify(settings, (current): readonly [Wait, Settings] => {
        const now = readTimeline(clock)
        const factor = current.factor * throttleFactor(current.throttle, now)
        const next = reserve(current.state, now, current.limit, factor)
        if (next.at > now) return [{ ms: next.at - now, changed: current.changed }, current]
        const stamped = wallTime(wallOffset, now, clock.unsafeCurrentTimeMillis())
        wallOffset = stamped.offset
        return [{ wall: stamped.wall }, { ...current, state: next.state }]
      })
    )
    const awaitSlot: Effect.Effect<number> = Effect.gen(function* () {
      for (;;) {
        const wait = yield* slot
        if ("wall" in wait) return wait.wall
        // Timers count whole ms: rounded up, the wake-up is never before the slot.
        yield* Effect.race(Effect.sleep(Math.ceil(wait.ms)), Deferred.await(wait.changed))
      }
    })

    const inLine = Effect.uninterruptibleMask((restore) =>
      Effect.gen(function* () {
        const turn = yield* Deferred.make<void>()
        const previous = yield* Ref.getAndSet(lastTurn, turn)
        return yield* restore(Effect.zipRight(Deferred.await(previous), awaitSlot)).pipe(
          // Interrupted before its slot: the successor's turn comes when this one's would have.
          Effect.onExit((exit) =>
            Exit.isSuccess(exit)
              ? Deferred.succeed(turn, undefined)
              : Deferred.completeWith(turn, Deferred.await(previous))
          )
        )
      })
    )

    // Nobody in line and a slot free now (an unlimited or idle destination): the slot is taken
    // at once, without the place in line that costs several times as much.
    const take = Effect.gen(function* () {
      if (yield* Deferred.isDone(yield* Ref.get(lastTurn))) {
        const wait = yield* slot
        if ("wall" in wait) return wait.wall
      }
      return yield* inLine
    })

    return {
      take,
      setLimit: (limit) => change((current) => ({ ...current, limit })),
      setFactor: (factor) => change((current) => ({ ...current, factor: Math.min(1, Math.max(minFactor, factor)) })),
      backOff: (untilMs) =>
        Effect.flatMap(Clock.currentTimeMillis, (wallNow) =>
          // Given on the wall clock, held on the timeline: as long from now as it asks.
          change((current, now) => ({ ...current, state: blockUntil(current.state, now + (untilMs - wallNow)) }))
        ),
      throttled: (retryAfterMs) =>
        change((current, now) => ({
          ...current,
          state: blockUntil(current.state, now + retryAfterMs),
          throttle: throttle(current.throttle, now, now + retryAfterMs)
        }))
    }
  })

/**
 * Each destination's limiter, kept for the life of the process: an actor restarted after a
 * crash or a settings change goes on from the starts its predecessor made, where a fresh
 * limiter would let a whole burst through right after them.
 */
export class RateLimiters extends Context.Tag("@sluice/broker/RateLimiters")<
  RateLimiters,
  { readonly forDestination: (destinationId: string, limit: RateLimit | null) => Effect.Effect<RateLimiter> }
>() {}

export const layerRegistry: Layer.Layer<RateLimiters> = Layer.sync(RateLimiters, () => {
  const all = new Map<string, RateLimiter>()
  return RateLimiters.of({
    forDestination: (destinationId, limit) =>
      Effect.suspend(() => {
        const known = all.get(destinationId)
        if (known !== undefined) return Effect.as(known.setLimit(limit), known)
        return Effect.tap(make(limit), (created) => Effect.sync(() => all.set(destinationId, created)))
      })
  })
})
