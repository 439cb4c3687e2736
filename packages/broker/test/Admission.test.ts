import { describe, expect, it } from "@effect/vitest"
import { Admission } from "@sluice/broker"

const event = (id: string, version?: number | string, supersedes?: boolean) => ({ id, key: "p1", version, supersedes })
const queued = (id: string, version: number | string | undefined, inFlight = false): Admission.Queued => ({
  id,
  version,
  inFlight
})

describe("Admission.decide", () => {
  it("delivers events without a key or a version as they are", () => {
    expect(Admission.decide({ id: "e1", key: undefined, version: 3 }, [], undefined, true)).toEqual({
      _tag: "Deliver",
      cancel: []
    })
    expect(Admission.decide(event("e1"), [queued("e0", 1)], { version: 5, eventId: "e0" }, true)).toEqual({
      _tag: "Deliver",
      cancel: []
    })
  })

  it("ignores a version older than one already delivered, naming it", () => {
    const verdict = Admission.decide(event("e2", 1), [], { version: 2, eventId: "e1" }, false)
    expect(verdict).toEqual({
      _tag: "Ignored",
      reason: "version 1 is older than version 2 already delivered (event e1)"
    })
  })

  it("calls a delivered or queued version under another id a duplicate of it", () => {
    expect(Admission.decide(event("e2", 2), [], { version: 2, eventId: "e1" }, false)).toEqual({
      _tag: "Duplicate",
      of: "e1"
    })
    expect(Admission.decide(event("e3", 4), [queued("e2", 4)], { version: 2, eventId: "e1" }, false)).toEqual({
      _tag: "Duplicate",
      of: "e2"
    })
  })

  it("settles the very event delivered before quietly (its ack was lost)", () => {
    expect(Admission.decide(event("e1", 2), [], { version: 2, eventId: "e1" }, false)).toEqual({
      _tag: "AlreadyDelivered"
    })
  })

  it("cancels older queued versions only when the event supersedes or the destination wants the latest only", () => {
    const waiting = [queued("e1", 1), queued("e2", 2, true), queued("e3", 5), queued("e4", undefined)]
    expect(Admission.decide(event("e9", 3), waiting, undefined, false)).toEqual({ _tag: "Deliver", cancel: [] })
    // e2 is in flight: too late. e3 is newer, e4 has no version to compare.
    expect(Admission.decide(event("e9", 3, true), waiting, undefined, false)).toEqual({
      _tag: "Deliver",
      cancel: [queued("e1", 1)]
    })
    expect(Admission.decide(event("e9", 3), waiting, undefined, true)).toEqual({
      _tag: "Deliver",
      cancel: [queued("e1", 1)]
    })
  })

  it("compares times to the microsecond and never mixes numbers with times", () => {
    const delivered = { version: "2026-11-23T09:00:00.123457Z", eventId: "e1" }
    expect(Admission.decide(event("e2", "2026-11-23T09:00:00.123456Z"), [], delivered, false)._tag).toBe("Ignored")
    expect(Admission.decide(event("e2", "2026-11-23T10:00:00.123457+01:00"), [], delivered, false)._tag).toBe(
      "Duplicate"
    )
    expect(Admission.decide(event("e2", 7), [queued("e1", "2026-11-23T09:00:00Z")], delivered, true)).toEqual({
      _tag: "Deliver",
      cancel: []
    })
  })
})
