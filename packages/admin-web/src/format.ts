/**
 * How numbers and times read on the page: durations scaled to their unit, latency
 * percentiles, rate limits, timestamps. Pure, so the tests pin every edge.
 */
import type { Destination, History } from "@sluice/protocol"

const NONE = "—"

const trim = (n: number, digits: number): string => String(Number(n.toFixed(digits)))

/** `0.4 ms`, `12 ms`, `1.5 s`, `3 m 20 s`, `2 h 5 m`, `3 d 4 h`; `—` when there is no value. */
export const formatDuration = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return NONE
  if (ms < 10) return `${trim(ms, 1)} ms`
  if (ms < 1000) return `${Math.round(ms)} ms`
  const seconds = ms / 1000
  if (seconds < 60) return `${trim(seconds, seconds < 10 ? 2 : 1)} s`
  const totalSeconds = Math.floor(seconds)
  const minutes = Math.floor(totalSeconds / 60)
  if (minutes < 60) return pair(minutes, "m", totalSeconds % 60, "s")
  const hours = Math.floor(minutes / 60)
  if (hours < 24) return pair(hours, "h", minutes % 60, "m")
  return pair(Math.floor(hours / 24), "d", hours % 24, "h")
}

const pair = (major: number, majorUnit: string, minor: number, minorUnit: string): string =>
  minor === 0 ? `${major} ${majorUnit}` : `${major} ${majorUnit} ${minor} ${minorUnit}`

/** The latency window the overview shows: the last hour when it saw attempts, else the widest that did. */
export const latencyToShow = (
  latency: ReadonlyArray<typeof History.LatencyWindow.Type>
): typeof History.LatencyWindow.Type | undefined => {
  const order = ["1h", "24h", "5m"] as const
  for (const window of order) {
    const found = latency.find((l) => l.window === window && l.count > 0)
    if (found !== undefined) return found
  }
  return undefined
}

/** `p50 12 ms · p99 340 ms`, or `—` when no attempt completed in the window. */
export const formatPercentiles = (window: typeof History.LatencyWindow.Type | undefined): string =>
  window === undefined || window.count === 0 || (window.p50Ms === null && window.p99Ms === null)
    ? NONE
    : `p50 ${formatDuration(window.p50Ms)} · p99 ${formatDuration(window.p99Ms)}`

/** `8/s, burst 16`, or `unlimited`. */
export const formatRateLimit = (rateLimit: Destination.RateLimit | null): string =>
  rateLimit === null ? "unlimited" : `${trim(rateLimit.perSecond, 2)}/s, burst ${rateLimit.burst}`

/** An integer with thousands separators. */
export const formatCount = (n: number): string => n.toLocaleString("en-US")

/** A timestamp in the reader's time zone, to the second. */
export const formatTime = (iso: string): string => {
  const date = new Date(iso)
  return Number.isNaN(date.getTime())
    ? iso
    : date.toLocaleString(undefined, {
        year: "numeric",
        month: "short",
        day: "numeric",
        hour: "2-digit",
        minute: "2-digit",
        second: "2-digit"
      })
}

/** `12 s ago`, `3 m ago`; `just now` under a second; `in 5 s` for the future. */
export const formatAgo = (iso: string, now: number): string => {
  const at = Date.parse(iso)
  if (Number.isNaN(at)) return iso
  const delta = now - at
  if (Math.abs(delta) < 1000) return "just now"
  // Whole seconds: "1.08 s ago" is more precision than anyone reads.
  const text = formatDuration(Math.round(Math.abs(delta) / 1000) * 1000)
  return delta > 0 ? `${text} ago` : `in ${text}`
}

/**
 * `<input type="datetime-local">` speaks local wall-clock time without a zone; the API speaks
 * RFC 3339. These two convert between them (an empty or invalid input is no time).
 */
export const localInputToIso = (value: string): string | undefined => {
  if (value.trim() === "") return undefined
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString()
}

const two = (n: number): string => String(n).padStart(2, "0")

export const isoToLocalInput = (iso: string | undefined): string => {
  if (iso === undefined) return ""
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return ""
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}T${two(d.getHours())}:${two(d.getMinutes())}`
}

/** A JSON value as the page shows it: indented, `undefined` as nothing. */
export const prettyJson = (value: unknown): string => JSON.stringify(value, null, 2) ?? ""
