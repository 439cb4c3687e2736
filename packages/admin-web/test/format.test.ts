import { describe, expect, it } from "vitest"
import {
  formatAgo,
  formatCount,
  formatDuration,
  formatPercentiles,
  formatRateLimit,
  isoToLocalInput,
  latencyToShow,
  localInputToIso,
  prettyJson
} from "../src/format.js"

describe("formatDuration", () => {
  it("scales to the unit that reads best", () => {
    expect(formatDuration(0)).toBe("0 ms")
    expect(formatDuration(0.42)).toBe("0.4 ms")
    expect(formatDuration(9.96)).toBe("10 ms")
    expect(formatDuration(12.4)).toBe("12 ms")
    expect(formatDuration(999.4)).toBe("999 ms")
    expect(formatDuration(1000)).toBe("1 s")
    expect(formatDuration(1534)).toBe("1.53 s")
    expect(formatDuration(12_345)).toBe("12.3 s")
    expect(formatDuration(60_000)).toBe("1 m")
    expect(formatDuration(200_000)).toBe("3 m 20 s")
    expect(formatDuration(3600_000)).toBe("1 h")
    expect(formatDuration(2 * 3600_000 + 5 * 60_000 + 59_000)).toBe("2 h 5 m")
    expect(formatDuration(3 * 86_400_000 + 4 * 3600_000)).toBe("3 d 4 h")
  })

  it("shows a dash for no value", () => {
    expect(formatDuration(null)).toBe("—")
    expect(formatDuration(undefined)).toBe("—")
    expect(formatDuration(Number.NaN)).toBe("—")
    expect(formatDuration(-1)).toBe("—")
  })
})

describe("latency percentiles", () => {
  const w = (window: "5m" | "1h" | "24h", count: number, p50Ms: number | null, p99Ms: number | null) => ({
    window,
    count,
    p50Ms,
    p99Ms
  })

  it("shows the last hour when it saw attempts", () => {
    const latency = [w("5m", 3, 5, 9), w("1h", 40, 12.2, 340), w("24h", 900, 20, 800)]
    expect(latencyToShow(latency)?.window).toBe("1h")
    expect(formatPercentiles(latencyToShow(latency))).toBe("p50 12 ms · p99 340 ms")
  })

  it("falls back to the day, then the last minutes, and to a dash without attempts", () => {
    expect(latencyToShow([w("5m", 0, null, null), w("1h", 0, null, null), w("24h", 2, 1500, 2500)])?.window).toBe("24h")
    expect(latencyToShow([w("5m", 1, 3, 3), w("1h", 0, null, null)])?.window).toBe("5m")
    expect(latencyToShow([w("1h", 0, null, null)])).toBeUndefined()
    expect(formatPercentiles(undefined)).toBe("—")
    expect(formatPercentiles(w("1h", 0, null, null))).toBe("—")
    expect(formatPercentiles(w("1h", 1, 0.5, null))).toBe("p50 0.5 ms · p99 —")
  })
})

describe("other formats", () => {
  it("rate limits", () => {
    expect(formatRateLimit(null)).toBe("unlimited")
    expect(formatRateLimit({ perSecond: 8, burst: 16 })).toBe("8/s, burst 16")
    expect(formatRateLimit({ perSecond: 0.333333, burst: 1 })).toBe("0.33/s, burst 1")
  })

  it("counts", () => {
    expect(formatCount(1234567)).toBe("1,234,567")
  })

  it("times relative to now", () => {
    const now = Date.parse("2026-11-23T10:00:00Z")
    expect(formatAgo("2026-11-23T10:00:00.400Z", now)).toBe("just now")
    expect(formatAgo("2026-11-23T09:59:48Z", now)).toBe("12 s ago")
    expect(formatAgo("2026-11-23T09:56:40Z", now)).toBe("3 m 20 s ago")
    expect(formatAgo("2026-11-23T10:00:05Z", now)).toBe("in 5 s")
    expect(formatAgo("not a time", now)).toBe("not a time")
  })

  it("datetime-local inputs round-trip through RFC 3339", () => {
    const iso = localInputToIso("2026-11-23T09:30")
    expect(iso).toMatch(/^2026-11-2\dT\d\d:30:00\.000Z$/)
    expect(isoToLocalInput(iso)).toBe("2026-11-23T09:30")
    expect(localInputToIso("")).toBeUndefined()
    expect(localInputToIso("yesterday-ish")).toBeUndefined()
    expect(isoToLocalInput(undefined)).toBe("")
  })

  it("pretty JSON", () => {
    expect(prettyJson({ a: [1, 2] })).toBe('{\n  "a": [\n    1,\n    2\n  ]\n}')
    expect(prettyJson(undefined)).toBe("")
  })
})
