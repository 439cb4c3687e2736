/**
 * The README's chart, drawn from a run's results as a self-contained SVG (no plotting
 * library, nothing fetched): one panel of horizontal bars per measure, one bar per contender.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { dirname, join } from "node:path"
import { Effect } from "effect"
import * as Report from "./Report.js"

export interface Panel {
  readonly title: string
  readonly unit: string
  readonly bars: ReadonlyArray<{ readonly label: string; readonly value: number; readonly color: string }>
}

const escape = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")

/** Panels stacked vertically; each bar is scaled to the panel's largest value. */
export const svg = (title: string, panels: ReadonlyArray<Panel>): string => {
  const width = 720
  const labelWidth = 270
  const barHeight = 26
  const gap = 8
  const panelHeader = 34
  const chartWidth = width - labelWidth - 110
  let y = 44
  const parts: Array<string> = [
    `<text x="16" y="28" font-size="17" font-weight="600">${escape(title)}</text>`
  ]
  for (const panel of panels) {
    parts.push(`<text x="16" y="${y + 20}" font-size="14" font-weight="600">${escape(panel.title)}</text>`)
    y += panelHeader
    const max = Math.max(...panel.bars.map((bar) => (Number.isFinite(bar.value) ? bar.value : 0)), 1e-9)
    for (const bar of panel.bars) {
      const value = Number.isFinite(bar.value) ? bar.value : 0
      const w = Math.max(1, (value / max) * chartWidth)
      parts.push(
        `<text x="${labelWidth - 10}" y="${y + barHeight * 0.68}" font-size="13" text-anchor="end">${escape(bar.label)}</text>`,
        `<rect x="${labelWidth}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" rx="3" fill="${bar.color}"/>`,
        `<text x="${(labelWidth + w + 8).toFixed(1)}" y="${y + barHeight * 0.68}" font-size="13">${escape(
          `${Report.fmt(bar.value, bar.value < 100 ? 1 : 0)} ${panel.unit}`
        )}</text>`
      )
      y += barHeight + gap
    }
    y += gap * 2
  }
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y}" viewBox="0 0 ${width} ${y}" font-family="system-ui, sans-serif">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...parts,
    "</svg>",
    ""
  ].join("\n")
}

/** Writes `<name>.svg` beside the JSON results. */
export const write = (quick: boolean, name: string, content: string): Effect.Effect<string> =>
  Effect.promise(async () => {
    const file = join(Report.resultsDir(quick), `${name}.svg`)
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, content)
    return file
  })
