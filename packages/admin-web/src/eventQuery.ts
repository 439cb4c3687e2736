/**
 * The event explorer keeps its search in the page URL (`/events?type=order.*&state=dead`),
 * so a search can be shared, bookmarked and walked back through with the browser. The URL
 * parameters are the API's own `EventQuery` parameters; what does not decode is dropped.
 */
import { History } from "@sluice/protocol"
import { Either, Schema } from "effect"

export type EventQuery = History.EventQuery

/** The fields in the order they appear in a URL. */
const FIELDS = ["type", "key", "destination", "state", "since", "until", "cursor", "limit"] as const

const decodeField = Schema.decodeUnknownEither(History.EventQuery)

/**
 * The query a URL's parameters describe. Each parameter is decoded on its own with the
 * API's schema, so one bad value (a mistyped state) loses only itself.
 */
export const queryFromParams = (params: URLSearchParams): EventQuery => {
  let query: EventQuery = {}
  for (const field of FIELDS) {
    const raw = params.get(field)
    if (raw === null || raw.trim() === "") continue
    const decoded = decodeField({ [field]: raw.trim() })
    if (Either.isRight(decoded)) query = { ...query, ...decoded.right }
  }
  return query
}

const encode = Schema.encodeSync(History.EventQuery)

/** The URL parameters of a query, empty fields left out. */
export const queryToParams = (query: EventQuery): URLSearchParams => {
  const encoded: Record<string, string | undefined> = encode(query)
  const params = new URLSearchParams()
  for (const field of FIELDS) {
    const value = encoded[field]
    if (value !== undefined && value !== "") params.set(field, value)
  }
  return params
}

/** The same search from its first page: what a changed filter starts from. */
export const withoutCursor = ({ cursor: _cursor, ...query }: EventQuery): EventQuery => query

/** True when the query filters on anything (the empty state then says so). */
export const isFiltered = (query: EventQuery): boolean =>
  Object.entries(withoutCursor(query)).some(([field, value]) => field !== "limit" && value !== undefined)
