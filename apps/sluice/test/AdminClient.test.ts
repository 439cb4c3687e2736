import { Destination } from "@sluice/protocol"
import { Either, Schema } from "effect"
import { describe, expect, it } from "vitest"
import { describeError } from "../src/AdminClient.js"

describe("describeError", () => {
  it("names the bad field in one line, not the whole schema tree", () => {
    const decoded = Schema.decodeUnknownEither(Destination.CreateDestination)({ url: 5, subscriptions: ["a.*"] })
    if (Either.isRight(decoded)) throw new Error("expected a decode failure")
    const text = describeError(decoded.left)
    expect(text).toMatch(/^invalid request: url: /)
    expect(text).not.toContain("\n")
  })

  it("tells how to reach the API when the request did not get there", () => {
    expect(describeError({ _tag: "RequestError", reason: "Transport", cause: "ECONNREFUSED" })).toContain("is `sluice start` running?")
  })
})
