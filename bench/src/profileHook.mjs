/**
 * Loaded into the broker (NODE_OPTIONS=--import, which refuses --cpu-prof) when the
 * benchmark profiles it: the first SIGUSR2 starts V8's CPU profiler, the second stops it
 * and writes `broker-<pid>-<time>.cpuprofile` into BENCH_PROFILE_DIR, so the profile covers
 * the measured phase only, not start-up. tsx compiles each TypeScript module to one line;
 * the positions of those modules' frames are mapped back to the TypeScript source through
 * the inline source maps tsx leaves, so the profile reads in lines of the repository.
 * Plain JavaScript: it loads before tsx does.
 */
import { Buffer } from "node:buffer"
import { renameSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { SourceMap } from "node:module"
import { join } from "node:path"

const dir = process.env.BENCH_PROFILE_DIR
const session = new Session()
session.connect()
const post = (method, params) =>
  new Promise((resolve, reject) => session.post(method, params, (error, result) => (error ? reject(error) : resolve(result))))

const INLINE_MAP = /\/\/# sourceMappingURL=data:application\/json;base64,([A-Za-z0-9+/=]+)\s*$/

/** Rewrites the frames of source-mapped scripts to their original line and column. */
const mapToSources = async (profile) => {
  await post("Debugger.enable")
  try {
    const maps = new Map()
    for (const { callFrame } of profile.nodes) {
      const { scriptId, url } = callFrame
      if (maps.has(scriptId) || !url.startsWith("file://") || url.includes("/node_modules/")) continue
      const { scriptSource } = await post("Debugger.getScriptSource", { scriptId })
      const inline = INLINE_MAP.exec(scriptSource)
      maps.set(scriptId, inline === null ? null : new SourceMap(JSON.parse(Buffer.from(inline[1], "base64").toString("utf8"))))
    }
    for (const { callFrame } of profile.nodes) {
      const entry = maps.get(callFrame.scriptId)?.findEntry(callFrame.lineNumber, callFrame.columnNumber)
      if (entry?.originalLine === undefined) continue
      callFrame.lineNumber = entry.originalLine
      callFrame.columnNumber = entry.originalColumn
    }
  } finally {
    await post("Debugger.disable")
  }
}

let running = false
process.on("SIGUSR2", () => {
  if (!running) {
    running = true
    post("Profiler.enable").then(() => post("Profiler.start"))
    return
  }
  running = false
  post("Profiler.stop")
    .then(async ({ profile }) => {
      await mapToSources(profile)
      const file = join(dir, `broker-${process.pid}-${Date.now()}.cpuprofile`)
      // Renamed once complete, so whoever waits for the file never reads half of it.
      writeFileSync(`${file}.part`, JSON.stringify(profile))
      renameSync(`${file}.part`, file)
    })
    .catch((error) => console.error("profileHook:", error))
})
