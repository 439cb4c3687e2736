/**
 * The admin address serves the built web app beside the API: files with their content types
 * (hashed assets cached for good), `index.html` for page paths, no way out of the app's
 * directory, and a page saying how to build the app when there is no build.
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect } from "effect"
import { request } from "node:http"
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { startBroker } from "../helpers/broker.js"
import { NatsFixture } from "../helpers/nats.js"

const INDEX = `<!doctype html><html><body><div id="root"></div><script type="module" src="/assets/app-abc123.js"></script></body></html>`
const SCRIPT = `console.log("sluice admin")`
const SECRET = "not for the web"

interface Answer {
  readonly status: number
  readonly headers: Record<string, string | Array<string> | undefined>
  readonly body: string
}

/** A GET with the path sent exactly as given (fetch would normalise away the `..`). */
const get = (baseUrl: string, path: string): Effect.Effect<Answer> =>
  Effect.async<Answer>((resume) => {
    const req = request(new URL(baseUrl), { path, method: "GET" }, (res) => {
      const chunks: Array<Buffer> = []
      res.on("data", (chunk: Buffer) => chunks.push(chunk))
      res.on("end", () =>
        resume(Effect.succeed({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }))
      )
    })
    req.on("error", (error) => resume(Effect.die(error)))
    req.end()
  })

/** A temp directory holding a fake build in `web/` and, beside it, a file the server must never give out. */
const fakeBuild = Effect.acquireRelease(
  Effect.promise(async () => {
    const root = await mkdtemp(join(tmpdir(), "sluice-admin-web-"))
    await mkdir(join(root, "web", "assets"), { recursive: true })
    await writeFile(join(root, "web", "index.html"), INDEX)
    await writeFile(join(root, "web", "assets", "app-abc123.js"), SCRIPT)
    await writeFile(join(root, "secret.txt"), SECRET)
    return root
  }),
  (root) => Effect.promise(() => rm(root, { recursive: true, force: true }))
)

// Live services: the broker and HTTP wait in real time.
layer(NatsFixture.layer, { excludeTestServices: true })("admin web app", (it) => {
  describe("with a build", () => {
    it.scoped("serves index.html, assets and page paths, and leaves the API alone", () =>
      Effect.gen(function* () {
        const nats = yield* NatsFixture
        const root = yield* fakeBuild
        const { adminUrl } = yield* startBroker({ natsUrl: nats.url, settings: { adminWebDir: join(root, "web") } })

        const index = yield* get(adminUrl, "/")
        expect(index.status).toBe(200)
        expect(index.headers["content-type"]).toMatch(/^text\/html/)
        expect(index.headers["cache-control"]).toBe("no-cache")
        expect(index.body).toBe(INDEX)

        const asset = yield* get(adminUrl, "/assets/app-abc123.js")
        expect(asset.status).toBe(200)
        expect(asset.headers["content-type"]).toMatch(/javascript/)
        expect(asset.headers["cache-control"]).toContain("immutable")
        expect(asset.body).toBe(SCRIPT)

        const page = yield* get(adminUrl, "/destinations/x")
        expect(page.status).toBe(200)
        expect(page.headers["content-type"]).toMatch(/^text\/html/)
        expect(page.body).toBe(INDEX)

        expect((yield* get(adminUrl, "/assets/missing-123.js")).status).toBe(404)

        const info = yield* get(adminUrl, "/api/v1/info")
        expect(info.status).toBe(200)
        expect(info.headers["content-type"]).toMatch(/^application\/json/)
        expect(JSON.parse(info.body)).toMatchObject({ natsUrl: nats.url, stream: "SLUICE_EVENTS" })

        const unknownApi = yield* get(adminUrl, "/api/v1/nothing-here")
        expect(unknownApi.status).toBe(404)
        expect(unknownApi.body).not.toContain("<html")
      })
    )

    it.scoped("refuses paths that step out of the app's directory", () =>
      Effect.gen(function* () {
        const nats = yield* NatsFixture
        const root = yield* fakeBuild
        const { adminUrl } = yield* startBroker({ natsUrl: nats.url, settings: { adminWebDir: join(root, "web") } })

        for (const path of [
          "/../secret.txt",
          "/../../../../etc/passwd",
          "/%2e%2e/secret.txt",
          "/assets/..%2f..%2fsecret.txt",
          "/assets/%2e%2e%5c%2e%2e%5csecret.txt"
        ]) {
          const answer = yield* get(adminUrl, path)
          expect(answer.status, path).toBe(400)
          expect(answer.body, path).not.toContain(SECRET)
          expect(answer.body, path).not.toContain("root:")
        }
      })
    )
  })

  it.scoped("answers a page saying how to build the app when there is no build", () =>
    Effect.gen(function* () {
      const nats = yield* NatsFixture
      const root = yield* fakeBuild
      const { adminUrl } = yield* startBroker({
        natsUrl: nats.url,
        settings: { adminWebDir: join(root, "not-built") }
      })

      for (const path of ["/", "/destinations/x"]) {
        const page = yield* get(adminUrl, path)
        expect(page.headers["content-type"], path).toMatch(/^text\/html/)
        expect(page.body, path).toContain("pnpm --filter @sluice/admin-web build")
      }
      expect((yield* get(adminUrl, "/api/v1/info")).status).toBe(200)
    })
  )
})
