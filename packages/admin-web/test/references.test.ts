import { describe, expect, it } from "vitest"
import { splitEventMentions } from "../src/references.js"

describe("splitEventMentions", () => {
  it("links the event an ignored reason names", () => {
    expect(
      splitEventMentions("version 3 is older than version 5 already delivered (event 01JD8X2K7Q5V6W8Y9Z0A1B2C3D)")
    ).toEqual([
      { text: "version 3 is older than version 5 already delivered (event " },
      { eventId: "01JD8X2K7Q5V6W8Y9Z0A1B2C3D" },
      { text: ")" }
    ])
  })

  it("keeps a full stop after an id out of it, and finds several", () => {
    expect(splitEventMentions("see event a.b. and event c:d")).toEqual([
      { text: "see event " },
      { eventId: "a.b" },
      { text: ". and event " },
      { eventId: "c:d" }
    ])
  })

  it("text without a mention stays one part", () => {
    expect(splitEventMentions("older than what was delivered")).toEqual([{ text: "older than what was delivered" }])
    expect(splitEventMentions("")).toEqual([])
  })
})
