/**
 * The app's pages and their paths. The broker answers `index.html` for every path outside
 * `/api`, so any of these can be opened, reloaded or shared directly.
 */

export type Route =
  | { readonly page: "destinations" }
  | { readonly page: "destination"; readonly id: string }
  | { readonly page: "events"; readonly search: string }
  | { readonly page: "event"; readonly id: string }
  | { readonly page: "audit" }
  | { readonly page: "notFound"; readonly path: string }

const segment = (s: string): string | undefined => {
  try {
    const decoded = decodeURIComponent(s)
    return decoded === "" ? undefined : decoded
  } catch {
    return undefined
  }
}

/** The page a location shows. */
export const matchRoute = (pathname: string, search: string): Route => {
  const parts = pathname.split("/").filter((p) => p !== "")
  const [first, second, ...rest] = parts
  if (rest.length === 0) {
    if (first === undefined) return { page: "destinations" }
    if (first === "destinations") {
      if (second === undefined) return { page: "destinations" }
      const id = segment(second)
      if (id !== undefined) return { page: "destination", id }
    }
    if (first === "events") {
      if (second === undefined) return { page: "events", search }
      const id = segment(second)
      if (id !== undefined) return { page: "event", id }
    }
    if (first === "audit" && second === undefined) return { page: "audit" }
  }
  return { page: "notFound", path: pathname }
}

/** Paths to link to, so no page spells another's path by hand. */
export const paths = {
  destinations: "/",
  destination: (id: string) => `/destinations/${encodeURIComponent(id)}`,
  events: (params?: URLSearchParams) => {
    const search = params?.toString() ?? ""
    return search === "" ? "/events" : `/events?${search}`
  },
  event: (id: string) => `/events/${encodeURIComponent(id)}`,
  audit: "/audit"
} as const
