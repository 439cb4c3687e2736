/**
 * The lost-event ledger's arithmetic: losses add up by reason, and the time range widens to
 * cover every lost event, whatever order they are counted in.
 */
import { describe, expect, it } from "vitest"
import { combine, lost } from "../src/LossLedger.js"

describe("LossLedger", () => {
  it("starts from the first loss", () => {
    expect(combine(undefined, lost("dead", 1, "2026-11-23T10:00:00.000Z"))).toEqual({
      since: "2026-11-23T10:00:00.000Z",
      until: "2026-11-23T10:00:00.000Z",
      dead: 1,
      disabled: 0,
      expired: 0
    })
  })

  it("adds counts by reason and widens the range both ways", () => {
    const recorded = [
      lost("dead", 1, "2026-11-23T10:00:00.000Z"),
      lost("expired", 40, "2026-11-20T08:00:00.000Z", "2026-11-20T09:30:00.000Z"),
      lost("disabled", 2, "2026-11-23T11:00:00.000Z"),
      lost("dead", 3, "2026-11-23T10:30:00.000Z")
    ].reduce(combine, undefined as ReturnType<typeof lost> | undefined)
    expect(recorded).toEqual({
      since: "2026-11-20T08:00:00.000Z",
      until: "2026-11-23T11:00:00.000Z",
      dead: 4,
      disabled: 2,
      expired: 40
    })
  })

  it("takes back a report that could not be delivered as it was", () => {
    const report = { since: "2026-11-23T09:00:00.000Z", until: "2026-11-23T10:00:00.000Z", dead: 2, disabled: 1, expired: 0 }
    expect(combine(lost("dead", 1, "2026-11-23T12:00:00.000Z"), report)).toEqual({ ...report, until: "2026-11-23T12:00:00.000Z", dead: 3 })
  })
})
