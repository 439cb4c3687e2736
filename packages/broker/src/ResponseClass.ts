/**
 * What a destination's answer means for the event and for the destination (DESIGN.md,
 * "Response classes"). Pure: the actor decides acks, retries, rate and health from the class.
 */
import type { History } from "@sluice/protocol"
import { Data } from "effect"
import type { SendResult } from "./HttpSender.js"

/** How an HTTP exchange ended: a complete response, or an error before one was read. */
export type Exchange =
  | { readonly status: number; readonly retryAfter?: string | null | undefined }
  | { readonly error: string }

/**
 * Reads a sender's result as an exchange. An incomplete exchange is an error even when its
 * status line arrived (a body trickled past the timeout is a failure, whatever the status said).
 */
export const exchangeOf = (result: SendResult): Exchange =>
  result.error !== null || result.status === null
    ? { error: result.error ?? "no response" }
    : { status: result.status, retryAfter: result.retryAfter }

/** The classes the actor acts on; `reason` is the text recorded in history and health changes. */
export type ResponseClass = Data.TaggedEnum<{
  /** 2xx: delivered. */
  Success: { readonly status: number; readonly reason: string }
  /** 429, or 503 with Retry-After: wait that long and slow down; the event itself did not fail. */
  Throttled: { readonly status: number; readonly retryAfterMs: number; readonly reason: string }
  /** 408, 5xx, timeouts, connection errors: retried, and counted against the destination's health. */
  Failure: { readonly status: number | null; readonly reason: string }
  /** Other 4xx and 3xx (redirects are not followed): the receiver refuses this event; the destination stays healthy. */
  Rejected: { readonly status: number; readonly reason: string }
  /** 410: the receiver is gone for good, so the destination is disabled. */
  Gone: { readonly status: number; readonly reason: string }
}>

/** Constructors and `$match` for the classes. */
export const ResponseClass = Data.taggedEnum<ResponseClass>()

/** The shortest back-off a Retry-After can ask for, so a `0` or past date cannot make a tight loop. */
export const minRetryAfterMs = 1_000
/** The longest back-off a Retry-After can impose; a receiver asking for days is capped. */
export const maxRetryAfterMs = 3_600_000
/** The back-off for a 429 without a usable Retry-After. */
export const defaultRetryAfterMs = 1_000

const clampRetryAfter = (ms: number): number => Math.min(maxRetryAfterMs, Math.max(minRetryAfterMs, ms))

/**
 * Reads a Retry-After header (delta-seconds or an HTTP-date, relative to `now` in ms) as a
 * clamped delay in ms; `null` when it is missing or unreadable.
 */
export const parseRetryAfter = (value: string | null | undefined, now: number): number | null => {
  if (value === null || value === undefined) return null
  const trimmed = value.trim()
  if (/^\d+$/.test(trimmed)) return clampRetryAfter(Number(trimmed) * 1_000)
  if (!/[A-Za-z]/.test(trimmed)) return null
  const at = Date.parse(trimmed)
  return Number.isNaN(at) ? null : clampRetryAfter(at - now)
}

/** Classifies one attempt; `now` (ms) anchors an HTTP-date Retry-After. */
export const classify = (exchange: Exchange, now: number): ResponseClass => {
  if ("error" in exchange) return ResponseClass.Failure({ status: null, reason: exchange.error })
  const { status } = exchange
  const retryAfterMs = parseRetryAfter(exchange.retryAfter, now)
  if (status >= 200 && status < 300) return ResponseClass.Success({ status, reason: `HTTP ${status}` })
  if (status === 429) {
    const ms = retryAfterMs ?? defaultRetryAfterMs
    return ResponseClass.Throttled({ status, retryAfterMs: ms, reason: `HTTP 429: retry after ${ms} ms` })
  }
  if (status === 503 && retryAfterMs !== null) {
    return ResponseClass.Throttled({ status, retryAfterMs, reason: `HTTP 503: retry after ${retryAfterMs} ms` })
  }
  if (status === 410) return ResponseClass.Gone({ status, reason: "HTTP 410: the receiver is gone" })
  if (status === 408 || (status >= 500 && status < 600)) return ResponseClass.Failure({ status, reason: `HTTP ${status}` })
  if (status >= 300 && status < 400) {
    return ResponseClass.Rejected({ status, reason: `HTTP ${status}: redirects are not followed` })
  }
  if (status >= 400 && status < 500) return ResponseClass.Rejected({ status, reason: `HTTP ${status}` })
  return ResponseClass.Failure({ status, reason: `HTTP ${status}: not a final response status` })
}

const outcomes = {
  Success: "success",
  Throttled: "throttled",
  Failure: "failure",
  Rejected: "rejected",
  Gone: "gone"
} as const satisfies Record<ResponseClass["_tag"], History.AttemptOutcome>

/** The `AttemptOutcome` recorded in history for a class. */
export const toOutcome = (responseClass: ResponseClass): History.AttemptOutcome => outcomes[responseClass._tag]
