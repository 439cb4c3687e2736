/** `sluice publish`: one event from flags, or many from an NDJSON file, straight to JetStream. */
import { Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Sluice } from "@sluice/sdk"
import { Config, Console, Data, Effect, Option } from "effect"
import type { AdminEndpoint } from "../AdminClient.js"
import { AdminClient, layer as adminLayer } from "../AdminClient.js"
import { adminUrl, optionalText, orUndefined } from "../Cli.js"

/** A flag or a file line that cannot become an event. */
class BadInput extends Data.TaggedError("BadInput")<{ readonly message: string }> {}

/** Events published per pipelined batch when reading a file. */
const FILE_BATCH = 500

const natsUrl = Options.text("nats-url").pipe(
  Options.withDescription("NATS to publish to; default: ask the running broker (its admin API)"),
  Options.withFallbackConfig(Config.string("SLUICE_NATS_URL")),
  Options.optional
)

const parseJson = (text: string, where: string) =>
  Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: (error) => new BadInput({ message: `${where}: not valid JSON (${(error as Error).message})` })
  })

/** `--version 3` is a number, `--version 2026-11-23T09:00:00Z` a time. */
const parseVersion = (v: string): number | string => (/^\d+$/.test(v) ? Number(v) : v)

const resolveNatsUrl = (flag: Option.Option<string>, admin: AdminEndpoint) =>
  Option.match(flag, {
    onSome: Effect.succeed,
    onNone: () =>
      Effect.gen(function* () {
        const client = yield* AdminClient
        const info = yield* client.system.info()
        return info.natsUrl
      }).pipe(Effect.provide(adminLayer(admin)))
  })

const publishFile = (path: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const sluice = yield* Sluice.Sluice
    const text = yield* fs.readFileString(path)
    const lines = text.split("\n").map((line, i) => ({ line: line.trim(), n: i + 1 })).filter((l) => l.line !== "")
    const inputs: Array<Sluice.PublishInput> = []
    for (const { line, n } of lines) {
      inputs.push((yield* parseJson(line, `${path}:${n}`)) as Sluice.PublishInput)
    }
    let done = 0
    for (let i = 0; i < inputs.length; i += FILE_BATCH) {
      const batch = inputs.slice(i, i + FILE_BATCH)
      yield* sluice.publishMany(batch).pipe(
        Effect.catchTag("InvalidEnvelope", (e) => {
          // publishMany names the batch index; report the file line instead.
          const match = /^\[(\d+)\]\.?(.*)$/.exec(e.field)
          const line = match ? lines[i + Number(match[1])]?.n : undefined
          return Effect.fail(new BadInput({ message: `${path}:${line ?? "?"}: ${e.message}` }))
        })
      )
      done += batch.length
      yield* Console.error(`published ${done}/${inputs.length}`)
    }
    yield* Console.log(`${done} events published from ${path}`)
  })

export const publish = Command.make(
  "publish",
  {
    adminUrl,
    natsUrl,
    type: optionalText("type", "event type, e.g. order.created"),
    key: optionalText("key", "resource the event is about (ordering, superseding)"),
    version: optionalText("version", "version of the resource: an integer or an RFC 3339 time"),
    idempotencyKey: optionalText("idempotency-key", "publishing again with the same key stores one event"),
    data: optionalText("data", "JSON payload"),
    file: optionalText("file", "NDJSON file with one event per line ({\"type\":…,\"data\":…})")
  },
  (o) =>
    Effect.gen(function* () {
      const servers = yield* resolveNatsUrl(o.natsUrl, o.adminUrl)
      const run = Effect.gen(function* () {
        if (Option.isSome(o.file)) return yield* publishFile(o.file.value)
        const type = yield* Option.match(o.type, {
          onNone: () => Effect.fail(new BadInput({ message: "--type is required (or --file)" })),
          onSome: Effect.succeed
        })
        const data = Option.isSome(o.data) ? yield* parseJson(o.data.value, "--data") : undefined
        const sluice = yield* Sluice.Sluice
        const result = yield* sluice.publish({
          type,
          key: orUndefined(o.key),
          version: Option.getOrUndefined(Option.map(o.version, parseVersion)),
          idempotencyKey: orUndefined(o.idempotencyKey),
          data
        })
        yield* Console.log(result.duplicate ? `${result.id} (duplicate of an event already stored)` : result.id)
      })
      yield* run.pipe(Effect.provide(Sluice.layer({ servers, name: "sluice-cli" })))
    })
).pipe(Command.withDescription("publish events (waits until JetStream has stored them)"))
