import { describe, expect, it } from "@effect/vitest"
import { Destination } from "@sluice/protocol"
import { eq } from "drizzle-orm"
import { Effect, Layer, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as BrokerConfig from "../src/BrokerConfig.js"
import * as Database from "../src/Database.js"
import { destinations } from "../src/HistorySchema.js"
import { HistoryStore } from "../src/HistoryStore.js"
import * as PgHistoryStore from "../src/PgHistoryStore.js"
import * as SecretBox from "../src/SecretBox.js"

const key = () => new Uint8Array(randomBytes(32))
const secret = "whsec_" + randomBytes(32).toString("base64")

const tempDir = Effect.acquireRelease(
  Effect.promise(() => mkdtemp(join(tmpdir(), "sluice-secretbox-"))),
  (dir) => Effect.promise(() => rm(dir, { recursive: true, force: true }))
)

describe("SecretBox", () => {
  it("seals a secret so that only the same key, for the same destination, opens it", () => {
    const box = SecretBox.make(key())
    const sealed = box.seal(secret, "shop")
    expect(sealed).toMatch(new RegExp(`^sealed:v1:${box.keyId}:[A-Za-z0-9+/]+=*$`))
    expect(sealed).not.toContain(secret.slice(6, 20))
    expect(SecretBox.isSealed(sealed)).toBe(true)
    expect(box.open(sealed, "shop")).toBe(secret)
    // A fresh nonce every time: the same secret never seals to the same text.
    expect(box.seal(secret, "shop")).not.toBe(sealed)
    expect(() => box.open(sealed, "other-shop")).toThrow(SecretBox.SecretUnreadable)
    expect(() => box.open(sealed, "other-shop")).toThrow(/damaged, or belongs to another destination/)
  })

  it("names both keys when a secret was sealed with another one", () => {
    const one = SecretBox.make(key())
    const two = SecretBox.make(key())
    expect(one.keyId).not.toBe(two.keyId)
    expect(() => two.open(one.seal(secret, "shop"), "shop")).toThrow(
      `the signing secret of destination shop cannot be read: it was sealed with key ${one.keyId}, and this process ` +
        `has key ${two.keyId} — every broker process sharing the history database needs the same SLUICE_SECRET_KEY ` +
        "(or the same secret-key file)"
    )
  })

  it("refuses a damaged sealed value", () => {
    const box = SecretBox.make(key())
    const sealed = box.seal(secret, "shop")
    const flipped = sealed.slice(0, -6) + (sealed.at(-6) === "A" ? "B" : "A") + sealed.slice(-5)
    expect(() => box.open(flipped, "shop")).toThrow(SecretBox.SecretUnreadable)
    expect(() => box.open(`sealed:v1:${box.keyId}:AAAA`, "shop")).toThrow(/damaged/)
  })

  it("reads a secret stored before encryption as it is", () => {
    expect(SecretBox.make(key()).open(secret, "shop")).toBe(secret)
    expect(SecretBox.isSealed(secret)).toBe(false)
  })
})

describe("SLUICE_SECRET_KEY", () => {
  const decode = (value: string) =>
    BrokerConfig.fromEnvironment({ SLUICE_SECRET_KEY: value }).pipe(Effect.map((settings) => settings.secretKey))

  it.effect("is the base64 of 32 bytes, optional", () =>
    Effect.gen(function* () {
      expect(Option.isNone((yield* BrokerConfig.fromEnvironment({})).secretKey)).toBe(true)
      const good = SecretBox.generateKey()
      expect(good).toMatch(/^[A-Za-z0-9+/]{43}=$/)
      expect((yield* decode(good)).pipe(Option.map(Redacted.value))).toEqual(Option.some(good))
      expect(Option.isSome(yield* decode(Buffer.alloc(32, 1).toString("base64url")))).toBe(true)
    })
  )

  for (const value of ["", "short", Buffer.alloc(16).toString("base64"), Buffer.alloc(33).toString("base64"), `${"!".repeat(43)}=`]) {
    it.effect(`refuses ${JSON.stringify(value)}, naming the setting and what it wants`, () =>
      Effect.gen(function* () {
        const error = yield* Effect.flip(decode(value))
        expect(error.message).toContain("SLUICE_SECRET_KEY")
        expect(error.message).toContain("base64 of 32 random bytes")
        expect(error.message).not.toContain(value === "" ? "\u0000" : value)
      })
    )
  }
})

describe("SecretBox.fromSettings", () => {
  it.scoped("uses SLUICE_SECRET_KEY when it is set", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const text = SecretBox.generateKey()
      const box = yield* SecretBox.fromSettings({ ...BrokerConfig.defaults, dataDir, secretKey: Option.some(Redacted.make(text)) })
      expect(box.keyId).toBe(SecretBox.make(new Uint8Array(Buffer.from(text, "base64"))).keyId)
      const generated = yield* Effect.promise(() => stat(join(dataDir, SecretBox.SECRET_KEY_FILE)).then(() => true, () => false))
      expect(generated).toBe(false)
    })
  )

  it.scoped("generates a key once into <dataDir>/secret-key (mode 0600) and reads it from there afterwards", () =>
    Effect.gen(function* () {
      const dataDir = join(yield* tempDir, "nested")
      const settings = { ...BrokerConfig.defaults, dataDir }
      const first = yield* SecretBox.fromSettings(settings)
      const file = join(dataDir, SecretBox.SECRET_KEY_FILE)
      const written = (yield* Effect.promise(() => readFile(file, "utf8"))).trim()
      expect(written).toMatch(/^[A-Za-z0-9+/]{43}=$/)
      expect(((yield* Effect.promise(() => stat(file))).mode & 0o777).toString(8)).toBe("600")
      const again = yield* SecretBox.fromSettings(settings)
      expect(again.keyId).toBe(first.keyId)
      expect(again.open(first.seal(secret, "shop"), "shop")).toBe(secret)
    })
  )

  it.scoped("fails naming the file and the setting when the file holds no usable key", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      yield* Effect.promise(() => writeFile(join(dataDir, SecretBox.SECRET_KEY_FILE), "not a key\n", { mode: 0o600 }))
      const error = yield* Effect.flip(SecretBox.fromSettings({ ...BrokerConfig.defaults, dataDir }))
      expect(error._tag).toBe("SecretKeyUnavailable")
      expect(error.message).toContain(join(dataDir, SecretBox.SECRET_KEY_FILE))
      expect(error.message).toContain("base64 of 32 random bytes")
      expect(error.message).toContain("SLUICE_SECRET_KEY")
    })
  )
})

describe("PgHistoryStore with a SecretBox", () => {
  const destination = (id: string): Destination.Destination =>
    Destination.makeDestination(
      { id, url: "https://example.com/hook", subscriptions: ["order.*"] },
      { id, secret, now: "2026-01-01T00:00:00.000Z" }
    )
  const rawSecret = (id: string) =>
    Database.Database.pipe(
      Effect.flatMap(({ db }) =>
        Effect.promise(() => db.select({ secret: destinations.secret }).from(destinations).where(eq(destinations.id, id)))
      ),
      Effect.map((rows) => rows[0]!.secret)
    )
  const box = SecretBox.make(key())
  const store = PgHistoryStore.layer.pipe(Layer.provideMerge(Database.layerPglite(undefined)), Layer.provide(SecretBox.layerKey(key())))

  it.effect("writes secrets sealed and reads them opened; a plain row is read as it is and sealed on its next write", () =>
    Effect.gen(function* () {
      const history = yield* HistoryStore
      yield* history.insertDestination(destination("sealed"))
      const sealed = yield* rawSecret("sealed")
      expect(SecretBox.isSealed(sealed)).toBe(true)
      expect(yield* history.getDestination("sealed")).toEqual(Option.some(destination("sealed")))
      expect((yield* history.listDestinations).map((d) => d.secret)).toEqual([secret])

      // A row as a version before encryption wrote it.
      const { db } = yield* Database.Database
      yield* Effect.promise(() => db.update(destinations).set({ secret }).where(eq(destinations.id, "sealed")))
      expect(yield* history.getDestination("sealed")).toEqual(Option.some(destination("sealed")))
      yield* history.updateDestination({ ...destination("sealed"), name: "renamed" })
      expect(SecretBox.isSealed(yield* rawSecret("sealed"))).toBe(true)
      expect(Option.map(yield* history.getDestination("sealed"), (d) => [d.name, d.secret])).toEqual(Option.some(["renamed", secret]))
    }).pipe(Effect.provide(store))
  )

  it.effect("fails the read, naming SLUICE_SECRET_KEY, when a secret was sealed under another key", () =>
    Effect.gen(function* () {
      const { db } = yield* Database.Database
      const history = yield* HistoryStore
      yield* history.insertDestination(destination("foreign"))
      yield* Effect.promise(() => db.update(destinations).set({ secret: box.seal(secret, "foreign") }).where(eq(destinations.id, "foreign")))
      const error = yield* Effect.flip(history.getDestination("foreign"))
      expect(error._tag).toBe("HistoryUnavailable")
      expect(error.message).toMatch(/^reading destination foreign failed: the signing secret of destination foreign cannot be read: .*SLUICE_SECRET_KEY/)
      expect((yield* Effect.flip(history.listDestinations)).message).toContain("SLUICE_SECRET_KEY")
    }).pipe(Effect.provide(store))
  )
})
