/**
 * Poison events: messages that would crash, wedge or loop the delivery path if an actor
 * tried to deliver them — not text, not an envelope, headers no HTTP request can carry —
 * are recognised here so the actor can record them dead on arrival and go on.
 */
import type { JsMsg } from "@nats-io/jetstream"
import { Envelope, Subjects } from "@sluice/protocol"
import { Either, Schema } from "effect"

/** Fatal on invalid UTF-8 (and keeps a BOM): bytes that are not text are no envelope, and are never delivered mangled. */
const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true })

/** A message's body as text; `Left` with why it is no envelope. */
export const bodyText = (msg: JsMsg): Either.Either<string, string> => {
  try {
    return Either.right(utf8.decode(msg.data))
  } catch {
    return Either.left("the message is not valid UTF-8")
  }
}

/** Headers that frame or route the request: the sender's alone (undici refuses most of them; `host` would re-route it). */
const senderHeaders = new Set([
  "host",
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "expect",
  "te",
  "trailer",
  "proxy-connection"
])
/** What an HTTP header value may hold (undici's rule): tab, printable ASCII and Latin-1; no CR, LF, NUL, nothing past U+00FF. */
const sendableValue = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * Why an event's own headers cannot go out with it, if they cannot. Every attempt would
 * fail the same way before reaching the receiver and count against the destination's
 * health — the destination would go down and its recoverer probe this event until its
 * retries ran out — so such an event is dead on arrival instead.
 */
export const unsendableHeaders = (headers: Envelope.Envelope["headers"]): string | undefined => {
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (senderHeaders.has(name.toLowerCase())) return `header ${name} is the sender's to set, not an event's`
    if (!sendableValue.test(value)) {
      return `header ${name} holds characters an HTTP header cannot carry (control characters or beyond U+00FF)`
    }
  }
  return undefined
}

const isEventId = Schema.is(Envelope.EventId)

/** The id to record an undecodable message under: its event-id header if that is a valid id, else its stream position. */
export const poisonId = (msg: JsMsg): string => {
  const header = msg.headers?.get(Subjects.Headers.eventId)
  return header !== undefined && isEventId(header) ? header : `seq-${msg.seq}`
}

