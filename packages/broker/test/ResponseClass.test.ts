import { describe, expect, it } from "vitest"
import * as ResponseClass from "../src/ResponseClass.js"

const now = Date.parse("2026-11-23T09:00:00Z")
const classify = (outcome: ResponseClass.Exchange) => ResponseClass.classify(outcome, now)
const tagOf = (outcome: ResponseClass.Exchange) => classify(outcome)._tag

describe("ResponseClass.parseRetryAfter", () => {
  it("reads delta-seconds", () => {
    expect(ResponseClass.parseRetryAfter("5", now)).toBe(5_000)
    expect(ResponseClass.parseRetryAfter(" 120 ", now)).toBe(120_000)
  })

  it("reads an HTTP-date relative to now", () => {
    expect(ResponseClass.parseRetryAfter("Mon, 23 Nov 2026 09:00:30 GMT", now)).toBe(30_000)
    expect(ResponseClass.parseRetryAfter("Monday, 23-Nov-26 09:02:00 GMT", now)).toBe(120_000)
  })

  it("clamps to between one second and one hour", () => {
    expect(ResponseClass.parseRetryAfter("0", now)).toBe(ResponseClass.minRetryAfterMs)
    expect(ResponseClass.parseRetryAfter("Mon, 23 Nov 2026 08:00:00 GMT", now)).toBe(ResponseClass.minRetryAfterMs)
    expect(ResponseClass.parseRetryAfter("86400", now)).toBe(ResponseClass.maxRetryAfterMs)
    expect(ResponseClass.parseRetryAfter("Thu, 01 Jan 2099 00:00:00 GMT", now)).toBe(ResponseClass.maxRetryAfterMs)
  })

  it("returns null when missing or unreadable", () => {
    expect(ResponseClass.parseRetryAfter(undefined, now)).toBeNull()
    expect(ResponseClass.parseRetryAfter(null, now)).toBeNull()
    expect(ResponseClass.parseRetryAfter("", now)).toBeNull()
    expect(ResponseClass.parseRetryAfter("-5", now)).toBeNull()
    expect(ResponseClass.parseRetryAfter("1.5", now)).toBeNull()
    expect(ResponseClass.parseRetryAfter("soon", now)).toBeNull()
  })
})

describe("ResponseClass.classify", () => {
  it("treats every 2xx as success", () => {
    for (const status of [200, 201, 202, 204, 299]) {
      expect(classify({ status })).toEqual(ResponseClass.ResponseClass.Success({ status, reason: `HTTP ${status}` }))
    }
  })

  it("throttles on 429, with or without Retry-After", () => {
    expect(classify({ status: 429, retryAfter: "7" })).toMatchObject({ _tag: "Throttled", status: 429, retryAfterMs: 7_000 })
    expect(classify({ status: 429 })).toMatchObject({
      _tag: "Throttled",
      retryAfterMs: ResponseClass.defaultRetryAfterMs
    })
    expect(classify({ status: 429, retryAfter: "whenever" })).toMatchObject({
      _tag: "Throttled",
      retryAfterMs: ResponseClass.defaultRetryAfterMs
    })
    expect(classify({ status: 429, retryAfter: "999999" })).toMatchObject({ retryAfterMs: ResponseClass.maxRetryAfterMs })
  })

  it("throttles on 503 only when it says when to come back", () => {
    expect(classify({ status: 503, retryAfter: "Mon, 23 Nov 2026 09:01:00 GMT" })).toMatchObject({
      _tag: "Throttled",
      status: 503,
      retryAfterMs: 60_000
    })
    expect(tagOf({ status: 503 })).toBe("Failure")
    expect(tagOf({ status: 503, retryAfter: null })).toBe("Failure")
    expect(tagOf({ status: 503, retryAfter: "later" })).toBe("Failure")
  })

  it("fails on 408, 5xx and transport errors", () => {
    for (const status of [408, 500, 502, 504, 599]) {
      expect(classify({ status })).toEqual(ResponseClass.ResponseClass.Failure({ status, reason: `HTTP ${status}` }))
    }
    expect(classify({ status: 500, retryAfter: "5" })._tag).toBe("Failure")
    expect(classify({ error: "timeout after 10000 ms" })).toEqual(
      ResponseClass.ResponseClass.Failure({ status: null, reason: "timeout after 10000 ms" })
    )
    expect(tagOf({ error: "connection refused: connect ECONNREFUSED 127.0.0.1:1" })).toBe("Failure")
  })

  it("rejects other 4xx and redirects", () => {
    for (const status of [400, 401, 403, 404, 409, 413, 422, 451]) {
      expect(classify({ status })).toEqual(ResponseClass.ResponseClass.Rejected({ status, reason: `HTTP ${status}` }))
    }
    for (const status of [301, 302, 307, 308]) {
      expect(classify({ status })).toMatchObject({ _tag: "Rejected", status, reason: `HTTP ${status}: redirects are not followed` })
    }
  })

  it("disables on 410 Gone", () => {
    expect(classify({ status: 410 })).toMatchObject({ _tag: "Gone", status: 410 })
  })

  it("counts statuses that are not final responses as failures", () => {
    expect(classify({ status: 101 })).toMatchObject({ _tag: "Failure", status: 101 })
    expect(classify({ status: 600 })).toMatchObject({ _tag: "Failure", status: 600 })
  })
})

describe("ResponseClass.exchangeOf", () => {
  const sent = { status: null, retryAfter: null, error: null, durationMs: 12, responseExcerpt: null }

  it("keeps a complete response's status and Retry-After", () => {
    expect(ResponseClass.exchangeOf({ ...sent, status: 429, retryAfter: "3" })).toEqual({ status: 429, retryAfter: "3" })
  })

  it("treats an exchange that ended in an error as a failure, even after a status arrived", () => {
    const timedOut = ResponseClass.exchangeOf({ ...sent, status: 200, error: "timeout after 300 ms" })
    expect(timedOut).toEqual({ error: "timeout after 300 ms" })
    expect(classify(timedOut)._tag).toBe("Failure")
    expect(ResponseClass.exchangeOf({ ...sent, error: "connection refused: x" })).toEqual({ error: "connection refused: x" })
  })
})

describe("ResponseClass.toOutcome", () => {
  it("maps each class to the history's attempt outcome", () => {
    expect(ResponseClass.toOutcome(classify({ status: 200 }))).toBe("success")
    expect(ResponseClass.toOutcome(classify({ status: 429 }))).toBe("throttled")
    expect(ResponseClass.toOutcome(classify({ status: 500 }))).toBe("failure")
    expect(ResponseClass.toOutcome(classify({ error: "timeout after 5 ms" }))).toBe("failure")
    expect(ResponseClass.toOutcome(classify({ status: 404 }))).toBe("rejected")
    expect(ResponseClass.toOutcome(classify({ status: 410 }))).toBe("gone")
  })
})
