/** Time flags (`--since`, `--until`): an RFC 3339 timestamp, or how long ago (`30m`, `2h`, `7d`). */
import { HelpDoc, Options, ValidationError } from "@effect/cli"
import { Envelope } from "@sluice/protocol"
import { Clock, Effect, Schema } from "effect"

const unitMs = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const

const isTimestamp = Schema.is(Envelope.Timestamp)

/** The timestamp the text names, relative ones taken back from now. */
const parseTime = (name: string) => (text: string) => {
  const ago = /^(\d+)([smhd])$/.exec(text)
  if (ago !== null) {
    const ms = Number(ago[1]) * unitMs[ago[2] as keyof typeof unitMs]
    return Clock.currentTimeMillis.pipe(Effect.map((now) => new Date(now - ms).toISOString()))
  }
  if (isTimestamp(text)) return Effect.succeed(text)
  return Effect.fail(
    ValidationError.invalidValue(
      HelpDoc.p(`--${name} must be an RFC 3339 time (2026-11-23T09:00:00Z) or how long ago (30m, 2h, 7d), not '${text}'`)
    )
  )
}

export const timeOption = (name: string, description: string) =>
  Options.text(name).pipe(
    Options.withDescription(`${description}: an RFC 3339 time or how long ago (30m, 2h, 7d)`),
    Options.mapEffect(parseTime(name))
  )
