/**
 * Delivery references name other events (`canceledBy`, `duplicateOf`, and the event an
 * `ignored` reason says was already delivered); the event page links each to its page.
 */

export type TextPart = { readonly text: string } | { readonly eventId: string }

/** The broker's ignored reasons say `… (event <id>)`; event ids are EventId characters. */
const EVENT_MENTION = /\bevent ([A-Za-z0-9][A-Za-z0-9._:-]{0,127})/g

/** `text` split into plain parts and the event ids it mentions, in order. */
export const splitEventMentions = (text: string): ReadonlyArray<TextPart> => {
  const parts: Array<TextPart> = []
  let last = 0
  for (const match of text.matchAll(EVENT_MENTION)) {
    // A sentence may end right after the id: its full stop is not part of it.
    const id = match[1].replace(/[.:]+$/, "")
    const idStart = match.index + "event ".length
    if (idStart > last) parts.push({ text: text.slice(last, idStart) })
    parts.push({ eventId: id })
    last = idStart + id.length
  }
  if (last < text.length) parts.push({ text: text.slice(last) })
  return parts
}
