/**
 * `@sluice/sdk`: what producers import. `connect` for plain TypeScript, the `Sluice`
 * service for Effect; both publish through the same implementation and fail with the
 * same errors.
 */
export * as Sluice from "./Sluice.js"
export type { ConnectOptions, PublishInput, PublishResult } from "./Sluice.js"
export * from "./SluiceClient.js"
export * from "./SluiceError.js"
export { Envelope } from "@sluice/protocol"
