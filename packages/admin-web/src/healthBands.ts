/**
 * A destination's health over a window of time as contiguous bands (one per stretch in one
 * state, with the reason it entered it), computed from its recorded transitions and its
 * current health: what the health timeline chart draws.
 */
import type { Destination, History, States } from "@sluice/protocol"

export interface HealthBand {
  readonly state: States.HealthState
  /** Epoch milliseconds, clipped to the window. */
  readonly start: number
  readonly end: number
  /** Why it entered this state; empty when that happened before any recorded transition. */
  readonly reason: string
}

/**
 * Bands covering `[from, to]` exactly, oldest first. Transitions may come in any order;
 * the state before the window is the target of the last transition before it (or, with
 * none before it, the origin of the first one inside; with no transitions at all, the
 * current state). The current health closes the timeline, so a transition not yet in the
 * history still shows.
 */
export const healthBands = (
  transitions: ReadonlyArray<History.HealthTransition>,
  current: Destination.Health,
  from: number,
  to: number
): ReadonlyArray<HealthBand> => {
  if (!(to > from)) return []
  const sorted = [...transitions]
    .map((t) => ({ ...t, time: Date.parse(t.at) }))
    .filter((t) => !Number.isNaN(t.time) && t.time <= to)
    .sort((a, b) => a.time - b.time)
  const before = sorted.filter((t) => t.time <= from)
  const inside = sorted.filter((t) => t.time > from)
  const lastBefore = before.at(-1)

  const bands: Array<HealthBand> = []
  /** Adds a band, extending the previous one instead when the state did not really change. */
  const push = (band: HealthBand) => {
    const last = bands.at(-1)
    if (last !== undefined && last.state === band.state && last.end === band.start) bands[bands.length - 1] = { ...last, end: band.end }
    else bands.push(band)
  }
  let state: States.HealthState = lastBefore?.to ?? inside[0]?.from ?? current.state
  let reason = lastBefore?.reason ?? ""
  let start = from
  const change = (time: number, next: States.HealthState, why: string) => {
    if (next === state && time > start) return
    if (time > start) push({ state, start, end: time, reason })
    state = next
    reason = why
    start = Math.max(start, time)
  }
  for (const t of inside) change(t.time, t.to, t.reason)
  const currentSince = Date.parse(current.since)
  if (current.state !== state) {
    change(Number.isNaN(currentSince) ? to : Math.min(Math.max(currentSince, start), to), current.state, current.reason)
  }
  if (to > start) push({ state, start, end: to, reason })
  return bands
}
