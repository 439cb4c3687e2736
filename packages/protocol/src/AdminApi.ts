/**
 * The admin HTTP API, defined once: the broker derives its server from it, the CLI and
 * the admin web app derive their clients, so the three cannot drift apart.
 */
import { HttpApi, HttpApiEndpoint, HttpApiGroup, HttpApiSchema } from "@effect/platform"
import { Schema } from "effect"
import {
  CreateDestination,
  DestinationId,
  DestinationView,
  SigningSecret,
  UpdateDestination
} from "./Destination.js"
import { EventId } from "./Envelope.js"
import { EventDetail } from "./History.js"

/** The resource does not exist. */
export class NotFound extends Schema.TaggedError<NotFound>()(
  "NotFound",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 404 })
) {}

/** The request conflicts with what exists (a destination id already taken). */
export class Conflict extends Schema.TaggedError<Conflict>()(
  "Conflict",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 409 })
) {}

/** The request is well-formed but not acceptable; `field` names what to fix. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()(
  "InvalidRequest",
  { field: Schema.String, message: Schema.String },
  HttpApiSchema.annotations({ status: 400 })
) {}

/** A dependency (the history database, NATS) is unavailable; retry after a moment. */
export class Unavailable extends Schema.TaggedError<Unavailable>()(
  "Unavailable",
  { message: Schema.String },
  HttpApiSchema.annotations({ status: 503 })
) {}

const strict = { parseOptions: { onExcessProperty: "error" as const } }

const destinationId = HttpApiSchema.param("id", DestinationId)
const eventId = HttpApiSchema.param("id", EventId)

/** Returned once, on creation: the only time the full signing secret is shown. */
export const DestinationCreated = Schema.Struct({
  ...DestinationView.fields,
  secret: SigningSecret
}).annotations({ identifier: "DestinationCreated" })

export class DestinationsGroup extends HttpApiGroup.make("destinations")
  .add(HttpApiEndpoint.get("list", "/destinations").addSuccess(Schema.Array(DestinationView)))
  .add(
    HttpApiEndpoint.post("create", "/destinations")
      .setPayload(CreateDestination.annotations(strict))
      .addSuccess(DestinationCreated, { status: 201 })
      .addError(Conflict)
      .addError(InvalidRequest)
  )
  .add(HttpApiEndpoint.get("get")`/destinations/${destinationId}`.addSuccess(DestinationView).addError(NotFound))
  .add(
    HttpApiEndpoint.patch("update")`/destinations/${destinationId}`
      .setPayload(UpdateDestination.annotations(strict))
      .addSuccess(DestinationView)
      .addError(NotFound)
      .addError(InvalidRequest)
  )
  .add(HttpApiEndpoint.del("remove")`/destinations/${destinationId}`.addSuccess(Schema.Void).addError(NotFound)) {}

export class EventsGroup extends HttpApiGroup.make("events").add(
  HttpApiEndpoint.get("get")`/events/${eventId}`.addSuccess(EventDetail).addError(NotFound)
) {}

/** What a client needs to find the rest of the system, e.g. the NATS URL for publishing. */
export const SystemInfo = Schema.Struct({
  version: Schema.String,
  natsUrl: Schema.String,
  stream: Schema.String
}).annotations({ identifier: "SystemInfo" })
export type SystemInfo = typeof SystemInfo.Type

export class SystemGroup extends HttpApiGroup.make("system").add(
  HttpApiEndpoint.get("info", "/info").addSuccess(SystemInfo)
) {}

export class AdminApi extends HttpApi.make("sluice")
  .add(SystemGroup)
  .add(DestinationsGroup)
  .add(EventsGroup)
  .addError(Unavailable)
  .prefix("/api/v1") {}
