/**
 * The typed admin API client the CLI uses, derived from the API definition, pointed at
 * `--admin-url` (or SLUICE_ADMIN_URL, default http://127.0.0.1:7700) and sending the admin
 * token: `--admin-token`, else SLUICE_ADMIN_TOKEN, else the token a local broker generated
 * into its data directory (SLUICE_DATA_DIR, default .sluice).
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest } from "@effect/platform"
import { Auth, BrokerConfig } from "@sluice/broker"
import { AdminApi, Envelope } from "@sluice/protocol"
import { Config, Context, Effect, Layer, Option, ParseResult, Redacted } from "effect"
import { readFile } from "node:fs/promises"
import { join } from "node:path"

export const DEFAULT_ADMIN_URL = "http://127.0.0.1:7700"

/** Where a running broker's admin API is, and the admin token given on the command line or in the environment. */
export interface AdminEndpoint {
  readonly url: string
  readonly token: Option.Option<Redacted.Redacted>
}

const make = (baseUrl: string, token: Option.Option<Redacted.Redacted>) =>
  HttpApiClient.make(AdminApi.AdminApi, {
    baseUrl,
    transformClient: Option.match(token, {
      onNone: () => undefined,
      onSome: (t) => HttpClient.mapRequest(HttpClientRequest.bearerToken(Redacted.value(t)))
    })
  })

export class AdminClient extends Context.Tag("@sluice/cli/AdminClient")<
  AdminClient,
  Effect.Effect.Success<ReturnType<typeof make>>
>() {}

/** The admin token a broker on this machine generated, if there is one (the API says what is missing otherwise). */
const generatedToken = Effect.gen(function* () {
  const dataDir = yield* Config.string("SLUICE_DATA_DIR").pipe(Config.withDefault(BrokerConfig.defaults.dataDir))
  const file = join(dataDir, Auth.ADMIN_TOKEN_FILE)
  return yield* Effect.promise(() => readFile(file, "utf8").then((text) => text.trim(), () => ""))
}).pipe(
  Effect.orElseSucceed(() => ""),
  Effect.map((token) => (token === "" ? Option.none() : Option.some(Redacted.make(token))))
)

export const layer = (endpoint: AdminEndpoint): Layer.Layer<AdminClient> =>
  Layer.effect(
    AdminClient,
    Effect.gen(function* () {
      const token = Option.isSome(endpoint.token) ? endpoint.token : yield* generatedToken
      return yield* make(endpoint.url, token)
    })
  ).pipe(Layer.provide(FetchHttpClient.layer))

/** Turns any client failure into one readable line. */
export const describeError = (error: unknown): string => {
  if (typeof error === "object" && error !== null) {
    const e = error as { _tag?: string; message?: string; reason?: string; cause?: unknown }
    if (e._tag === "RequestError") return `cannot reach the Sluice admin API (${String(e.cause ?? e.reason)}); is \`sluice start\` running?`
    // One line naming the field, as the broker answers, not the whole schema tree.
    if (ParseResult.isParseError(error)) return `invalid request: ${Envelope.describeParseError(error).message}`
    if (e._tag === "HttpApiDecodeError") {
      const issues = (error as { issues?: ReadonlyArray<{ path: ReadonlyArray<PropertyKey>; message: string }> }).issues ?? []
      const first = issues[0]
      if (first !== undefined) return `invalid request: ${first.path.map(String).join(".") || "(root)"}: ${first.message}`
      return `invalid request: ${e.message}`
    }
    if (e._tag === "Unauthorized") return `${e.message} — pass --admin-token or set SLUICE_ADMIN_TOKEN`
    if (e.message) return e.message
  }
  return String(error)
}
