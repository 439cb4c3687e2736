/**
 * The typed admin API client the CLI uses, derived from the API definition, pointed at
 * `--admin-url` (or SLUICE_ADMIN_URL, default http://127.0.0.1:7700).
 */
import { FetchHttpClient, HttpApiClient } from "@effect/platform"
import { AdminApi } from "@sluice/protocol"
import type { Effect} from "effect";
import { Context, Layer } from "effect"

export const DEFAULT_ADMIN_URL = "http://127.0.0.1:7700"

const make = (baseUrl: string) => HttpApiClient.make(AdminApi.AdminApi, { baseUrl })

export class AdminClient extends Context.Tag("@sluice/cli/AdminClient")<
  AdminClient,
  Effect.Effect.Success<ReturnType<typeof make>>
>() {}

export const layer = (baseUrl: string): Layer.Layer<AdminClient> =>
  Layer.effect(AdminClient, make(baseUrl)).pipe(
    Layer.provide(FetchHttpClient.layer)
  )

/** Turns any client failure into one readable line. */
export const describeError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: string; message?: string; reason?: string; cause?: unknown }
    if (e._tag === "RequestError") return `cannot reach the Sluice admin API (${String(e.cause ?? e.reason)}); is \`sluice start\` running?`
    if (e._tag === "HttpApiDecodeError" || e._tag === "ParseError") return `invalid request: ${e.message}`
    if (e.message) return e.message
  }
  return String(error)
}
