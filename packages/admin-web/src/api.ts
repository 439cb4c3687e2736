/**
 * The admin API as the app calls it: the client is derived from the API definition in
 * `@sluice/protocol` (so it cannot drift from the broker), pointed at the origin that served
 * the page — the broker itself, or Vite's dev server, which proxies `/api` to it — and
 * carries the session's admin token on every request.
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { AdminApi } from "@sluice/protocol"
import { Duration, Effect } from "effect"
import { currentToken, signOut } from "./session.js"

const clientFor = (token: () => string | null) =>
  HttpApiClient.make(AdminApi.AdminApi, {
    baseUrl: window.location.origin,
    transformClient: HttpClient.mapRequest((request) => {
      const value = token()
      return value === null ? request : HttpClientRequest.bearerToken(request, value)
    })
  })

const sessionClient = clientFor(currentToken)

export type AdminClient = Effect.Effect.Success<typeof sessionClient>

/** What every failure of the client (transport, status, decoding, the API's own errors) carries. */
export interface ApiFailure {
  readonly _tag: string
  readonly message: string
  /** Present on `InvalidRequest`: the field to fix. */
  readonly field?: string
  /** Present on `ResponseError`s: an answer that is not the API's. */
  readonly response?: { readonly status: number }
}

/** A failed call as the page shows it. */
export interface ApiProblem {
  /** The broker refused the token: the session is over. */
  readonly unauthorized: boolean
  /** One sentence: what went wrong and, where it helps, what to check. */
  readonly message: string
}

export const TOKEN_REFUSED = "The broker refused the admin token (HTTP 401). Sign in again with the current token."

const isUnauthorized = (error: ApiFailure): boolean => error._tag === "Unauthorized" || error.response?.status === 401

const describe = (error: ApiFailure): ApiProblem => {
  if (isUnauthorized(error)) return { unauthorized: true, message: TOKEN_REFUSED }
  const message = (() => {
    switch (error._tag) {
      case "RequestError":
        return `Cannot reach the Sluice admin API at ${window.location.origin} — is the broker running?`
      case "ResponseError":
        return `The Sluice admin API answered HTTP ${error.response?.status ?? "?"} instead of data — is the broker running and up to date?`
      case "Unavailable":
        return `The broker is up but cannot answer right now: ${error.message}`
      case "InvalidRequest":
        return error.field === undefined ? error.message : `${error.field}: ${error.message}`
      case "ParseError":
      case "HttpApiDecodeError":
        return `The broker's answer does not match this app (reload the page after an upgrade): ${error.message}`
      default:
        return error.message
    }
  })()
  return { unauthorized: false, message }
}

/** A broker that accepts the connection but never answers must not freeze a page's refreshes. */
const ANSWER_WITHIN = Duration.seconds(20)

const run = <A, E extends ApiFailure>(
  client: typeof sessionClient,
  request: (client: AdminClient) => Effect.Effect<A, E>
): Effect.Effect<A, ApiProblem> =>
  client.pipe(
    Effect.flatMap(request),
    Effect.mapError(describe),
    Effect.timeoutFail({
      duration: ANSWER_WITHIN,
      onTimeout: (): ApiProblem => ({
        unauthorized: false,
        message: `The Sluice admin API did not answer within ${Duration.format(ANSWER_WITHIN)} — is the broker overloaded?`
      })
    }),
    Effect.provide(FetchHttpClient.layer)
  )

/**
 * Runs one call with the session's token. A refused token signs the operator out, which
 * brings back the login page with the reason.
 */
export const call = <A, E extends ApiFailure>(
  request: (client: AdminClient) => Effect.Effect<A, E>
): Effect.Effect<A, ApiProblem> =>
  run(sessionClient, request).pipe(
    Effect.tapError((problem) => (problem.unauthorized ? Effect.sync(() => signOut(problem.message)) : Effect.void))
  )

/** Checks a token before the session starts with it: a call only the admin token may make. */
export const verifyToken = (token: string): Effect.Effect<void, ApiProblem> =>
  run(clientFor(() => token), (client) => client.destinations.list()).pipe(Effect.asVoid)

/** The live stream's address; EventSource cannot send headers, so the token rides in the query. */
export const liveUrl = (token: string): string =>
  `${window.location.origin}/api/v1/live?token=${encodeURIComponent(token)}`
