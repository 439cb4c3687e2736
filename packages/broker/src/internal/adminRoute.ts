/**
 * The admin check for routes served beside the HttpApi (live streams, metrics): the same
 * token and the same 401 body as the API's own middleware.
 */
import { HttpServerResponse } from "@effect/platform"
import { Effect } from "effect"
import type { AccessTokens } from "../Auth.js"
import { verifyAdmin } from "../Auth.js"

/** `respond` when `given` is the admin token; 401 otherwise. */
export const adminOnly = <E, R>(
  tokens: AccessTokens["Type"],
  given: string,
  respond: Effect.Effect<HttpServerResponse.HttpServerResponse, E, R>
): Effect.Effect<HttpServerResponse.HttpServerResponse, E, R> =>
  verifyAdmin(tokens, given).pipe(
    Effect.matchEffect({
      onFailure: (error) =>
        Effect.succeed(HttpServerResponse.unsafeJson({ _tag: "Unauthorized", message: error.message }, { status: 401 })),
      onSuccess: () => respond
    })
  )
