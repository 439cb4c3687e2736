import { it } from "@effect/vitest"
import { Effect } from "effect"
import { describe, expect } from "vitest"
import { waitFor, waitForEffect } from "./waitFor.js"

describe("waitFor", () => {
  it("returns the first truthy value, treating a failed check as not yet", async () => {
    let calls = 0
    const value = await waitFor(() => {
      calls += 1
      if (calls < 3) throw new Error("not there")
      return calls >= 4 && { calls }
    })
    expect(value).toEqual({ calls: 4 })
  })

  it("names what it waited for and the last failure on timeout", async () => {
    await expect(
      waitFor(
        () => {
          throw new Error("row missing")
        },
        { description: "the delivery row", timeoutMs: 100 }
      )
    ).rejects.toThrow("timed out after 100 ms waiting for the delivery row (last check failed: row missing)")
  })

  it.live("polls an effect", () =>
    Effect.gen(function* () {
      const started = Date.now()
      const elapsed = yield* waitForEffect(Effect.sync(() => Date.now() - started >= 50 && Date.now() - started))
      expect(elapsed).toBeGreaterThanOrEqual(50)
      const error = yield* Effect.flip(waitForEffect(Effect.succeed(false), { timeoutMs: 50 }))
      expect(error._tag).toBe("WaitTimedOut")
    })
  )
})
