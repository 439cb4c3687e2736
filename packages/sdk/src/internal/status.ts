/**
 * Status polling through the broker's HTTP API, with the client derived from the API
 * definition: `GET /api/v1/events/:id/status` with the producer token — the one HTTP ingest
 * takes, so a producer never holds the admin token — its failures turned into the three a
 * producer can act on.
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { AdminApi } from "@sluice/protocol"
import { Effect } from "effect"
import type { StatusError } from "../SluiceError.js"
import { AdminApiNotConfigured, EventNotFound, StatusUnavailable } from "../SluiceError.js"

/** Where the broker's API is, the token it takes, and how long one status request may take. */
export interface StatusOptions {
  readonly adminUrl?: string
  readonly producerToken?: string
  readonly timeoutMs: number
}

const reasonOf = (error: { readonly _tag: string; readonly message?: string }): string => {
  switch (error._tag) {
    case "Unauthorized":
      return `the broker refused the token (401): ${error.message} — check producerToken`
    case "Unavailable":
      return `the broker's history is unavailable (503): ${error.message}`
    case "RequestError":
      return `cannot reach the broker's API: ${error.message}`
    default:
      return error.message ?? error._tag
  }
}

/** The `status` operation: fails with `AdminApiNotConfigured` on every call when no `adminUrl` was given. */
export const makeStatus = (
  options: StatusOptions
): Effect.Effect<(eventId: string) => Effect.Effect<AdminApi.EventStatus, StatusError>> => {
  const { adminUrl, producerToken } = options
  if (adminUrl === undefined) return Effect.succeed(() => Effect.fail(new AdminApiNotConfigured()))
  return Effect.gen(function* () {
    const httpClient = yield* HttpClient.HttpClient
    const get = yield* HttpApiClient.endpoint(AdminApi.AdminApi, {
      group: "ingest",
      endpoint: "status",
      // (`endpoint` takes no transformClient: the token is added to the client it is given.)
      httpClient:
        producerToken === undefined
          ? httpClient
          : HttpClient.mapRequest(httpClient, HttpClientRequest.bearerToken(producerToken)),
      baseUrl: adminUrl
    })
    return (eventId: string) =>
      get({ path: { id: eventId } }).pipe(
        Effect.timeoutFail({
          duration: options.timeoutMs,
          onTimeout: () => new StatusUnavailable({ eventId, reason: `no answer from ${adminUrl} within ${options.timeoutMs}ms` })
        }),
        Effect.mapError((error): StatusError => {
          if (error._tag === "NotFound") return new EventNotFound({ eventId })
          if (error._tag === "StatusUnavailable") return error
          return new StatusUnavailable({ eventId, reason: reasonOf(error) })
        })
      )
  }).pipe(Effect.provide(FetchHttpClient.layer))
}
