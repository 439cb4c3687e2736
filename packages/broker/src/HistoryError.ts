/**
 * Errors of the history database. Callers tell "the database is unreachable, try again"
 * (the history writer keeps its facts in JetStream and retries) from "that id is taken"
 * (the admin API answers 409).
 */
import { DrizzleQueryError } from "drizzle-orm/errors"
import { Predicate, Schema } from "effect"

/** The database could not be opened or migrated at start; the URL in the message has no password. */
export class DatabaseUnavailable extends Schema.TaggedError<DatabaseUnavailable>()("DatabaseUnavailable", {
  message: Schema.String
}) {}

/** A history read or write failed; nothing in the call was committed. */
export class HistoryUnavailable extends Schema.TaggedError<HistoryUnavailable>()("HistoryUnavailable", {
  message: Schema.String
}) {}

/** A destination with this id already exists. */
export class DestinationExists extends Schema.TaggedError<DestinationExists>()("DestinationExists", {
  id: Schema.String,
  message: Schema.String
}) {}

/** A list was asked to continue from a cursor it did not hand out. */
export class InvalidCursor extends Schema.TaggedError<InvalidCursor>()("InvalidCursor", {
  message: Schema.String
}) {}

/**
 * One line saying why a database call failed. A failed Drizzle query is reduced to the
 * driver's reason: its message would list the parameters, and those include secrets.
 */
export const describeCause = (cause: unknown): string => {
  if (cause instanceof DrizzleQueryError) return cause.cause ? describeCause(cause.cause) : "query failed"
  if (cause instanceof Error) {
    if (cause.message !== "") return cause.message
    return Predicate.hasProperty(cause, "code") ? String(cause.code) : cause.name
  }
  return String(cause)
}
