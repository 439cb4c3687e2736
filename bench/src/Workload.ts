/**
 * The events the benchmarks publish and the two ways they publish them: a burst (everything
 * as fast as the producer can hand it over, for throughput) and a steady rate (well below
 * saturation, for latency). Every event carries its publish time for the receivers.
 */
import { Effect } from "effect"
import type { Probe } from "./ReceiverProtocol.js"

/** Wall-clock ms with sub-ms precision, comparable across processes on the machine. */
export const now = (): number => performance.timeOrigin + performance.now()

/** One event to publish: which destination subscribes to it, and optionally its key and place in the key. */
export interface BenchEvent {
  readonly destination: number
  readonly key?: string
  readonly seq?: number
}

/** The event type destination `i` of a benchmark subscribes to. */
export const eventType = (prefix: string, destination: number): string => `${prefix}.d${destination}`

/** Filler that brings a delivered envelope to about 1 KiB (the receivers report the exact mean). */
const PAD = "x".repeat(880)

/** The `data` of an event published now. */
export const payload = (event: BenchEvent): Probe & { readonly pad: string } => ({
  t: now(),
  ...(event.key === undefined ? {} : { k: event.key, s: event.seq }),
  pad: PAD
})

/**
 * How long delivering `events` may take before the contender is reported as not keeping up
 * (with what it did deliver) and the run goes on: generous for anything near the ceiling.
 */
export const deadlineMs = (events: number): number => 60_000 + events * 4

/** Hands events to a contender; resolves once the contender has accepted (stored) all of them. */
export interface Publisher {
  readonly publish: (events: ReadonlyArray<BenchEvent>) => Effect.Effect<void, unknown>
}

/** `count` events spread round-robin over `destinations`. */
export const spread = (count: number, destinations: number): ReadonlyArray<BenchEvent> =>
  Array.from({ length: count }, (_, i) => ({ destination: i % destinations }))

/** Publishes everything in chunks, one chunk after the other, as fast as the contender accepts them. */
export const burst = (publisher: Publisher, events: ReadonlyArray<BenchEvent>, chunkSize = 1_000) =>
  Effect.gen(function* () {
    const startedAt = now()
    for (let i = 0; i < events.length; i += chunkSize) yield* publisher.publish(events.slice(i, i + chunkSize))
    return { startedAt, endedAt: now() }
  })

/**
 * Publishes `ratePerSecond` events for `durationMs`, in 10 ms ticks; a tick that ran late is
 * caught up by the next, so the offered load stays what was asked.
 */
export const paced = (
  publisher: Publisher,
  next: (n: number) => BenchEvent,
  ratePerSecond: number,
  durationMs: number
) =>
  Effect.gen(function* () {
    const startedAt = now()
    const total = Math.round((ratePerSecond * durationMs) / 1000)
    let sent = 0
    while (sent < total) {
      const due = Math.min(total, Math.floor(((now() - startedAt) * ratePerSecond) / 1000))
      if (due > sent) {
        const events = Array.from({ length: due - sent }, (_, i) => next(sent + i))
        sent = due
        yield* publisher.publish(events)
      }
      yield* Effect.sleep(10)
    }
    return { startedAt, endedAt: now(), count: total }
  })
