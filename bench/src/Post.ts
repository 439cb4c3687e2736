/**
 * How the baselines post an event: undici over a keep-alive pool with the same connection
 * limit per receiver as the broker's HttpSender (the parent passes it in), so the HTTP
 * client is not what differs.
 */
import { Agent, request } from "undici"

/** A keep-alive pool of `connections` per receiver. */
export const makeAgent = (connections: number): Agent => new Agent({ connections, keepAliveTimeout: 4_000 })

/** POSTs a JSON body and reads the (empty) answer; rejects when no answer came. */
export const post = async (
  agent: Agent,
  url: string,
  body: string | Uint8Array,
  headers: Readonly<Record<string, string>> = {}
): Promise<number> => {
  const response = await request(url, {
    dispatcher: agent,
    method: "POST",
    headers: { ...headers, "content-type": "application/json" },
    body
  })
  await response.body.dump()
  return response.statusCode
}
