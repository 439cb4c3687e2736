/**
 * How results leave the benchmark: a Markdown table on stdout (pasteable into the README)
 * and a JSON file per benchmark under bench/results/, with the machine and versions it ran
 * on, so a number in the README can always be traced to the run that produced it.
 */
import { execFileSync } from "node:child_process"
import { mkdir, rename, writeFile } from "node:fs/promises"
import { cpus, loadavg, totalmem } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Console, Effect } from "effect"

/** bench/results: full runs (committed, quoted in the README); quick runs go to its quick/ (ignored). */
export const resultsDir = (quick: boolean): string =>
  join(fileURLToPath(new URL("../results", import.meta.url)), ...(quick ? ["quick"] : []))

const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

const firstLine = (command: string, args: ReadonlyArray<string>, cwd?: string): string | null => {
  try {
    return execFileSync(command, args, { encoding: "utf8", cwd, stdio: ["ignore", "pipe", "ignore"] }).split("\n")[0]!.trim()
  } catch {
    return null
  }
}

/** What the numbers depend on besides the code. */
export const environment = () => ({
  cpu: cpus()[0]?.model ?? "unknown",
  cores: cpus().length,
  memoryGiB: Math.round(totalmem() / 2 ** 30),
  /** 1-minute load average when the benchmark started: other work on the machine skews results. */
  loadAverage: loadavg()[0],
  node: process.version,
  natsServer: firstLine("nats-server", ["--version"]),
  redisServer: firstLine("redis-server", ["--version"]),
  postgres: firstLine("psql", ["--version"]),
  commit: firstLine("git", ["rev-parse", "--short", "HEAD"], repoRoot),
  /** Uncommitted changes were present: the numbers are of the working tree, not of `commit`. */
  dirty: (firstLine("git", ["status", "--porcelain"], repoRoot) ?? "") !== ""
})

/** Writes `<name>.json` (via a .tmp file and a rename, so a crash never leaves half a file). */
export const writeJson = (quick: boolean, name: string, content: unknown): Effect.Effect<string> =>
  Effect.promise(async () => {
    const file = join(resultsDir(quick), `${name}.json`)
    await mkdir(dirname(file), { recursive: true })
    await writeFile(`${file}.tmp`, `${JSON.stringify(content, null, 2)}\n`)
    await rename(`${file}.tmp`, file)
    return file
  })

/** A Markdown table with a heading. */
export const table = (title: string, header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    `| ${cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join(" | ")} |`
  const rule = `|${widths.map((w, i) => (i === 0 ? `-${"-".repeat(w)}-` : `-${"-".repeat(w)}:`)).join("|")}|`
  return [`\n### ${title}\n`, line(header), rule, ...rows.map(line), ""].join("\n")
}

export const printTable = (title: string, header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>) =>
  Console.log(table(title, header, rows))

/** A number for a table: fixed decimals, thousands separated, "–" when missing. */
export const fmt = (value: number | null | undefined, decimals = 0): string =>
  value === null || value === undefined || Number.isNaN(value)
    ? "–"
    : value.toLocaleString("en-US", { minimumFractionDigits: decimals, maximumFractionDigits: decimals })

/** Bytes as MiB for a table. */
export const mib = (bytes: number): string => fmt(bytes / 2 ** 20, 1)
