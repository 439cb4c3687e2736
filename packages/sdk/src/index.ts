/**
 * `@sluice/sdk`: what producers import. `connect` for plain TypeScript, the `Sluice`
 * service for Effect; both publish (and poll an event's `status`) through the same
 * implementation and fail with the same errors. `createOutbox` enqueues events in a Drizzle transaction, and the outbox
 * relay (`OutboxRelay.layer`, `startOutboxRelay`) publishes them.
 */
export * as Sluice from "./Sluice.js"
export type { ClientOptions, ConnectOptions, EventStatus, PublishInput, PublishResult } from "./Sluice.js"
export * from "./SluiceClient.js"
export * from "./SluiceError.js"
export * as Outbox from "./Outbox.js"
export { createOutbox } from "./Outbox.js"
export * as OutboxRelay from "./OutboxRelay.js"
export { startOutboxRelay } from "./OutboxRelay.js"
export { Envelope } from "@sluice/protocol"
