/**
 * The admin web app in a real browser against a real broker: Debian's chromium driven by
 * playwright-core, the app built from source with Vite, the broker in-process on a real
 * nats-server with a throwaway Postgres, and scripted HTTP receivers. An operator signs in,
 * watches a destination go down and recover, pauses and resumes it, replays a dead event,
 * changes limits and the secret, and keeps seeing changes when the live stream is blocked.
 */
import type { Sluice } from "@sluice/sdk"
import { Effect, Exit, Scope } from "effect"
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Browser, Page } from "playwright-core"
import { chromium } from "playwright-core"
import { build } from "vite"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { TestBroker } from "../helpers/broker.js"
import { producer, startBroker } from "../helpers/broker.js"
import { useNats } from "../helpers/nats.js"
import { createThrowawayDatabase } from "../helpers/postgres.js"
import type { ReceivedRequest, Receiver } from "../helpers/receiver.js"
import { startReceiver } from "../helpers/receiver.js"
import { waitFor } from "../helpers/waitFor.js"

const ADMIN_WEB = fileURLToPath(new URL("../../packages/admin-web/", import.meta.url))

const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
]

/** How long the UI may take to show what the broker knows (live stream, 3-5 s refreshes, health timing). */
const UI_TIMEOUT = 30_000

const fastRetry = { initialMs: 50, factor: 2, maxMs: 500, jitter: 0 }
const fastHealth = { failureThreshold: 3, successThreshold: 2, probeInitialMs: 100, probeMaxMs: 400 }

/** With SLUICE_SCREENSHOTS=<dir> the main pages are saved there as PNGs (how docs/screenshots is made). */
const SCREENSHOTS = process.env.SLUICE_SCREENSHOTS

const screenshot = async (page: Page, name: string): Promise<void> => {
  if (SCREENSHOTS !== undefined && SCREENSHOTS !== "") await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
}

const nats = useNats()
const scope = Effect.runSync(Scope.make())
const cleanups: Array<() => Promise<void>> = []
let webDir: string
let browser: Browser
let broker: TestBroker
let sluice: Sluice.Sluice["Type"]

const inScope = <A, E>(effect: Effect.Effect<A, E, Scope.Scope>): Promise<A> => Effect.runPromise(Scope.extend(effect, scope))

beforeAll(async () => {
  // The app as `pnpm --filter @sluice/admin-web build` makes it, into a directory of its own.
  webDir = await mkdtemp(join(tmpdir(), "sluice-admin-web-build-"))
  await build({
    root: ADMIN_WEB,
    configFile: join(ADMIN_WEB, "vite.config.ts"),
    logLevel: "warn",
    build: { outDir: webDir, emptyOutDir: true }
  })
  const database = await createThrowawayDatabase()
  cleanups.push(database.drop)
  broker = await inScope(startBroker({ natsUrl: nats().url, databaseUrl: database.url, settings: { adminWebDir: webDir } }))
  sluice = await inScope(producer(nats().url))
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: CHROMIUM_ARGS })
}, 240_000)

afterAll(async () => {
  await browser?.close()
  await Effect.runPromise(Scope.close(scope, Exit.void))
  for (const cleanup of cleanups.reverse()) await cleanup()
  if (webDir !== undefined) await rm(webDir, { recursive: true, force: true })
}, 60_000)

let pages: Array<Page> = []
afterEach(async () => {
  for (const page of pages) await page.close()
  pages = []
})

const newPage = async (viewport = { width: 1280, height: 900 }): Promise<Page> => {
  const context = await browser.newContext({ viewport })
  const page = await context.newPage()
  pages.push(page)
  return page
}

/** Opens the app and signs in through the login form. */
const signIn = async (page: Page, path = "/"): Promise<void> => {
  await page.goto(`${broker.adminUrl}${path}`)
  await page.getByLabel("Admin token").fill(broker.adminToken)
  await page.getByRole("button", { name: "Sign in" }).click()
  await page.getByRole("navigation", { name: "Sections" }).waitFor()
}

const receiver = async (script?: Parameters<typeof startReceiver>[0]): Promise<Receiver> => {
  const started = await startReceiver(script)
  cleanups.push(started.close)
  return started
}

const publish = (input: Parameters<Sluice.Sluice["Type"]["publish"]>[0]) => Effect.runPromise(sluice.publish(input))

const webhookIds = (requests: ReadonlyArray<ReceivedRequest>) => requests.map((r) => String(r.headers["webhook-id"]))

/** Whether a request carries Sluice's report of lost events rather than an event of the test's. */
const isSyncError = (r: ReceivedRequest) => (r.json as { type?: string } | undefined)?.type === "sluice.sync_error"

/** A receiver that rejects the test's events while `rejecting()`, and takes Sluice's lost-event reports as any receiver should. */
const rejectingReceiver = (rejecting: () => boolean, rejection: { status: number; body?: string }) =>
  receiver((request) => (rejecting() && !isSyncError(request) ? rejection : { status: 200 }))

/** The health badge in a destination's header, once it reads `state`. */
const headerBadge = (page: Page, state: string) => page.locator("h1 .badge", { hasText: new RegExp(`^${state}$`) })

/** Page-side expressions (this file is compiled without the DOM library). */
const storedToken = `window.sessionStorage.getItem("sluice.adminToken")`

/** Confirms the open dialog with its action button. */
const confirm = async (page: Page, action: string) => {
  const dialog = page.getByRole("dialog")
  await dialog.getByRole("button", { name: action }).click()
  await dialog.waitFor({ state: "detached" })
}

// Each scenario waits on the broker several times, up to UI_TIMEOUT each.
describe("admin web app", { timeout: 120_000 }, () => {
  it("signs in with the admin token, refuses a wrong one, and a refused session returns to the login page", async () => {
    const page = await newPage()
    await page.goto(broker.adminUrl)
    await page.getByLabel("Admin token").waitFor()
    await screenshot(page, "login")
    await page.getByLabel("Admin token").fill("not-the-token")
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.getByRole("alert").filter({ hasText: "refused this token" }).waitFor()

    await page.getByLabel("Admin token").fill(broker.adminToken)
    await page.getByRole("button", { name: "Sign in" }).click()
    await page.getByRole("heading", { name: "Destinations", level: 1 }).waitFor()
    expect(await page.evaluate(storedToken)).toBe(broker.adminToken)

    // The token survives a reload (session storage) ...
    await page.reload()
    await page.getByRole("heading", { name: "Destinations", level: 1 }).waitFor()
    // ... and when the broker refuses it, the operator is back at the login page, told why.
    await page.evaluate(`window.sessionStorage.setItem("sluice.adminToken", "revoked")`)
    await page.goto(`${broker.adminUrl}/audit`)
    await page.getByRole("alert").filter({ hasText: "refused the admin token (HTTP 401)" }).waitFor()
    await page.getByLabel("Admin token").waitFor()
    expect(await page.evaluate(storedToken)).toBeNull()
  })

  it("pause holds every event back; resume delivers the backlog in order", async () => {
    const hook = await receiver()
    await Effect.runPromise(
      broker.client.destinations.create({ payload: { id: "orders", url: hook.url, subscriptions: ["order.*"] } })
    )
    const page = await newPage()
    await signIn(page, "/destinations/orders")
    await headerBadge(page, "active").waitFor({ timeout: UI_TIMEOUT })

    await page.getByRole("button", { name: "Pause", exact: true }).click()
    await page.getByRole("dialog").getByText("nothing is lost").waitFor()
    await confirm(page, "Pause deliveries")
    await headerBadge(page, "paused").waitFor({ timeout: UI_TIMEOUT })

    const published: Array<string> = []
    for (let i = 0; i < 5; i++) published.push((await publish({ type: "order.updated", key: "o1", data: { i } })).id)
    // The broker has all five waiting for the destination (its backlog, as the page shows it) ...
    await page.locator('[data-stat="Backlog"]', { hasText: /^5$/ }).waitFor({ timeout: UI_TIMEOUT })
    // ... and sent none of them.
    expect(hook.received()).toHaveLength(0)

    await page.getByRole("button", { name: "Resume", exact: true }).click()
    await confirm(page, "Resume deliveries")
    await headerBadge(page, "active").waitFor({ timeout: UI_TIMEOUT })
    await hook.waitForCount(5, UI_TIMEOUT)
    expect(webhookIds(hook.received())).toEqual(published)
    await page.locator('[data-stat="Backlog"]', { hasText: /^0$/ }).waitFor({ timeout: UI_TIMEOUT })
  })

  it("replays a dead event from its page and shows the new attempt", async () => {
    let reject = true
    const hook = await rejectingReceiver(() => reject, { status: 422, body: "unknown customer" })
    await Effect.runPromise(
      broker.client.destinations.create({ payload: { id: "crm", url: hook.url, subscriptions: ["customer.*"] } })
    )
    const { id } = await publish({ type: "customer.created", key: "c1", data: { name: "Ada" } })
    await hook.waitForCount(1, UI_TIMEOUT)

    const page = await newPage()
    await signIn(page, "/events")
    await page.getByLabel("Event id").fill(id)
    await page.getByRole("button", { name: "Search" }).click()
    await page.getByRole("heading", { name: id, level: 1 }).waitFor()
    await page.getByText('"name": "Ada"').waitFor()

    const delivery = page.getByRole("region", { name: "Delivery to crm" })
    await delivery.locator(".badge", { hasText: /^dead$/ }).waitFor({ timeout: UI_TIMEOUT })
    await delivery.locator('tr[data-attempt="1"]').getByText("unknown customer").waitFor({ timeout: UI_TIMEOUT })

    reject = false
    await delivery.getByRole("button", { name: "Replay to crm" }).click()
    await page.getByRole("dialog").getByText("delivered with fresh attempts").waitFor()
    await confirm(page, "Replay event")
    await delivery.locator(".badge", { hasText: /^completed$/ }).waitFor({ timeout: UI_TIMEOUT })
    const second = delivery.locator('tr[data-attempt="2"]')
    await second.waitFor({ timeout: UI_TIMEOUT })
    expect(await second.locator('[data-label="Status"]').textContent()).toBe("200")
    await waitFor(() => hook.received().filter((r) => !isSyncError(r)).length >= 2, { description: "the replayed event received" })
    expect(webhookIds(hook.received().filter((r) => !isSyncError(r)))).toEqual([id, id])
    // The receiver was also told it had lost that event, before the replay.
    expect((hook.received().find(isSyncError)?.json as { data: { dead: number } }).data.dead).toBe(1)
    await screenshot(page, "event")

    const sections = page.getByRole("navigation", { name: "Sections" })
    await sections.getByRole("link", { name: "Events" }).click()
    await page.locator(`tr[data-event="${id}"]`).waitFor()
    await screenshot(page, "events")
    await sections.getByRole("link", { name: "Audit log" }).click()
    await page.getByRole("cell", { name: "crm" }).first().waitFor({ timeout: UI_TIMEOUT })
    await screenshot(page, "audit")
  })

  it("changes limits, rotates the secret showing it once, and replays dead-lettered deliveries since a time", async () => {
    let reject = true
    const hook = await rejectingReceiver(() => reject, { status: 400 })
    await Effect.runPromise(
      broker.client.destinations.create({ payload: { id: "billing", url: hook.url, subscriptions: ["invoice.*"] } })
    )
    const ids: Array<string> = []
    for (let i = 0; i < 2; i++) ids.push((await publish({ type: "invoice.issued", key: `i${i}`, data: { i } })).id)
    await hook.waitForCount(2, UI_TIMEOUT)

    const page = await newPage()
    await signIn(page, "/destinations/billing")
    await page.getByRole("alert").filter({ hasText: "2 deliveries are dead-lettered" }).waitFor({ timeout: UI_TIMEOUT })

    await page.getByLabel("Rate limited").check()
    await page.getByLabel("Requests per second").fill("5")
    await page.getByLabel("Burst").fill("2")
    await page.getByLabel("Max concurrency").fill("3")
    await page.getByRole("button", { name: "Save limits" }).click()
    await page.getByRole("status").filter({ hasText: "Saved." }).waitFor()
    const saved = await Effect.runPromise(broker.client.destinations.get({ path: { id: "billing" } }))
    expect(saved).toMatchObject({ rateLimit: { perSecond: 5, burst: 2 }, maxConcurrency: 3 })
    await page.getByText("5/s, burst 2").waitFor({ timeout: UI_TIMEOUT })

    await page.getByRole("button", { name: "Rotate secret" }).click()
    await page.getByRole("dialog").getByText("shown once").waitFor()
    await confirm(page, "Rotate secret")
    const secret = await page.getByTestId("new-secret").textContent()
    expect(secret).toMatch(/^whsec_/)
    await page.getByLabel("Signing secret, masked", { exact: true }).filter({ hasText: `${secret?.slice(0, 10)}…` }).waitFor({
      timeout: UI_TIMEOUT
    })
    await page.getByRole("button", { name: "I have saved it" }).click()
    await page.getByTestId("new-secret").waitFor({ state: "detached" })

    reject = false
    await page.getByRole("button", { name: "Replay…" }).click()
    await page.getByRole("dialog").getByText("dead, disabled, canceled").waitFor()
    await confirm(page, "Replay")
    await page.getByRole("status").filter({ hasText: "Queued 2 deliveries again." }).waitFor({ timeout: UI_TIMEOUT })
    const events = () => hook.received().filter((r) => !isSyncError(r))
    await waitFor(() => events().length >= 4, { description: "both events replayed", timeoutMs: UI_TIMEOUT })
    expect(new Set(webhookIds(events().slice(2)))).toEqual(new Set(ids))
  })

  it("shows a destination going down when its receiver fails and active again after it recovers", async () => {
    let failing = true
    const hook = await receiver(() => ({ status: failing ? 500 : 200 }))
    await Effect.runPromise(
      broker.client.destinations.create({
        payload: { id: "flaky", url: hook.url, subscriptions: ["flaky.*"], retry: fastRetry, health: fastHealth }
      })
    )
    const page = await newPage()
    await signIn(page)
    const row = page.locator('tr[data-destination="flaky"]')
    await row.locator(".badge", { hasText: /^active$/ }).waitFor({ timeout: UI_TIMEOUT })
    await page.getByRole("status").filter({ hasText: /^Live$/ }).waitFor({ timeout: UI_TIMEOUT })

    for (let i = 0; i < 3; i++) await publish({ type: "flaky.changed", key: "k", version: i + 1, data: { i } })
    await row.locator(".badge", { hasText: /^down$/ }).waitFor({ timeout: UI_TIMEOUT })
    await row.getByText(/consecutive failures/).waitFor()
    await screenshot(page, "destinations")

    failing = false
    await row.locator(".badge", { hasText: /^active$/ }).waitFor({ timeout: UI_TIMEOUT })
    await waitFor(() => new Set(webhookIds(hook.received())).size === 3, { description: "all three delivered" })

    // The destination's page tells the story: its timeline lists every transition with its reason.
    await row.getByRole("link", { name: "flaky" }).click()
    const timeline = page.getByRole("list", { name: "Health changes, newest first" })
    for (const reason of [/consecutive failures/, /recovering/]) {
      await timeline.getByText(reason).first().waitFor({ timeout: UI_TIMEOUT })
    }
    expect(await timeline.locator("li").count()).toBeGreaterThanOrEqual(3)
    await screenshot(page, "destination")
  })

  it("falls back to polling every 5 s when the live stream is unavailable", async () => {
    const hook = await receiver()
    await Effect.runPromise(
      broker.client.destinations.create({ payload: { id: "polled", url: hook.url, subscriptions: ["polled.*"] } })
    )
    const page = await newPage()
    // A proxy that cannot stream: every request for the live stream fails.
    await page.route("**/api/v1/live**", (route) => route.abort())
    await signIn(page)
    await page.getByRole("status").filter({ hasText: "refreshing every 5 s" }).waitFor({ timeout: UI_TIMEOUT })
    const row = page.locator('tr[data-destination="polled"]')
    await row.locator(".badge", { hasText: /^active$/ }).waitFor({ timeout: UI_TIMEOUT })
    await Effect.runPromise(broker.client.destinations.pause({ path: { id: "polled" } }))
    await row.locator(".badge", { hasText: /^paused$/ }).waitFor({ timeout: UI_TIMEOUT })
  })

  it("fits a narrow screen", async () => {
    const hook = await receiver()
    await Effect.runPromise(
      broker.client.destinations.create({ payload: { id: "phone", url: hook.url, subscriptions: ["phone.*"] } })
    )
    const { id } = await publish({ type: "phone.rang", data: { from: "+1 555 0100" } })
    await hook.waitForCount(1, UI_TIMEOUT)
    const page = await newPage({ width: 390, height: 844 })
    await signIn(page)
    await page.locator('tr[data-destination="phone"]').waitFor({ timeout: UI_TIMEOUT })
    for (const path of ["/", "/destinations/phone", "/events", `/events/${id}`, "/audit"]) {
      await page.goto(`${broker.adminUrl}${path}`)
      await page.locator("main h1").first().waitFor()
      const overflow = await page.evaluate<number>("document.documentElement.scrollWidth - window.innerWidth")
      expect(overflow, path).toBeLessThanOrEqual(0)
    }
    await page.goto(`${broker.adminUrl}/destinations/phone`)
    await page.locator("main h1").first().waitFor()
    await screenshot(page, "destination-narrow")
  })
})
