/**
 * A whole broker in the test process — real NATS, a real database, the real admin HTTP
 * API on a free port — and the typed admin client derived from the API definition.
 */
import { FetchHttpClient, HttpApiClient, HttpClient, HttpClientRequest, HttpServer } from "@effect/platform"
import { Auth, Broker, BrokerConfig } from "@sluice/broker"
import { AdminApi } from "@sluice/protocol"
import { Sluice } from "@sluice/sdk"
import { Context, Effect, Exit, Layer, Option, Redacted, Scope } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { TEST_SECRET_KEY } from "./brokerProcess.js"
import { NatsFixture } from "./nats.js"
import { throwawayDatabase } from "./postgres.js"

export interface TestBrokerOptions {
  readonly natsUrl: string
  /** A Postgres URL; PGlite in a temp directory when absent. */
  readonly databaseUrl?: string
  readonly settings?: Partial<BrokerConfig.BrokerSettings>
}

/** The tokens `startBroker` configures, unless its settings give others. */
export const TEST_ADMIN_TOKEN = "test-admin-token-0123456789"
export const TEST_PRODUCER_TOKEN = "test-producer-token-0123456789"
/** See `TEST_SECRET_KEY` in brokerProcess.ts: every test broker seals secrets with it. */
export { TEST_SECRET_KEY }

/** The typed admin API client, sending `Authorization: Bearer <token>` when given one. */
export const apiClient = (baseUrl: string, token?: string) =>
  HttpApiClient.make(AdminApi.AdminApi, {
    baseUrl,
    transformClient: token === undefined ? undefined : HttpClient.mapRequest(HttpClientRequest.bearerToken(token))
  }).pipe(Effect.provide(FetchHttpClient.layer))
export type AdminClient = Effect.Effect.Success<ReturnType<typeof apiClient>>

export interface TestBroker {
  readonly adminUrl: string
  /** Sends the admin token. */
  readonly client: AdminClient
  readonly adminToken: string
  readonly producerToken: string
  /** The broker's own services, for assertions that go below the API. */
  readonly context: Context.Context<Layer.Layer.Success<typeof Broker.layer>>
}

/** Starts a broker for the rest of the scope. */
export const startBroker = (options: TestBrokerOptions): Effect.Effect<TestBroker, unknown, Scope.Scope> =>
  Effect.gen(function* () {
    const dataDir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-broker-"))),
      (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
    )
    const config = BrokerConfig.layer({
      natsUrl: Option.some(options.natsUrl),
      databaseUrl: Option.fromNullable(options.databaseUrl),
      dataDir,
      adminPort: 0,
      adminToken: Option.some(Redacted.make(TEST_ADMIN_TOKEN)),
      producerToken: Option.some(Redacted.make(TEST_PRODUCER_TOKEN)),
      secretKey: Option.some(Redacted.make(TEST_SECRET_KEY)),
      // Test receivers listen on 127.0.0.1; tests of the address policy turn this off.
      allowPrivateDestinations: true,
      ...options.settings
    })
    const context = yield* Layer.build(Broker.layer.pipe(Layer.provide(config)))
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("admin server is not on TCP")
    const adminUrl = `http://127.0.0.1:${address.port}`
    const tokens = Context.get(context, Auth.AccessTokens)
    const adminToken = Redacted.value(tokens.admin.value)
    const client = yield* apiClient(adminUrl, adminToken)
    return { adminUrl, client, adminToken, producerToken: Redacted.value(tokens.producer.value), context }
  })

/**
 * The usual integration setup: a broker on the file's shared nats-server with a throwaway
 * Postgres history, and a producer.
 */
export const brokerOnFixture = Effect.gen(function* () {
  const nats = yield* NatsFixture
  const databaseUrl = yield* throwawayDatabase
  const broker = yield* startBroker({ natsUrl: nats.url, databaseUrl })
  const sluice = yield* producer(nats.url)
  return { ...broker, sluice, natsUrl: nats.url, databaseUrl }
})

/** A producer connected to the test's NATS for the rest of the scope. */
export const producer = (natsUrl: string): Effect.Effect<Sluice.Sluice["Type"], unknown, Scope.Scope> =>
  Layer.build(Sluice.layer({ servers: natsUrl })).pipe(Effect.map((ctx) => Context.get(ctx, Sluice.Sluice)))

/**
 * A broker a test stops part-way and starts again on the same NATS and database: `restart`
 * ends the first one (its scope closes as a shutdown would) and answers a new one.
 */
export const restartableBroker = (options: TestBrokerOptions) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const broker = yield* startBroker(options).pipe(Scope.extend(scope))
    const restart = Scope.close(scope, Exit.void).pipe(Effect.zipRight(startBroker(options)))
    return { broker, restart }
  })
