/**
 * The ceiling: the least a JetStream-to-HTTP bridge can do. One durable pull consumer per
 * destination, each message POSTed as it is and acknowledged on a 2xx (released for
 * redelivery otherwise), with as many requests in flight as Sluice allows the destination.
 * No policy, no history, no ordering: the practical limit of NATS and Node HTTP here.
 */
import type { JsMsg } from "@nats-io/jetstream"
import { jetstream } from "@nats-io/jetstream"
import { connect } from "@nats-io/transport-node"
import * as Ipc from "./Ipc.js"
import { makeAgent, post } from "./Post.js"
import type { CeilingProtocol } from "./WorkerProtocol.js"

/** Messages pulled per request, as the broker's actors pull. */
const PULL_BATCH = 512

Ipc.serve<CeilingProtocol>({
  start: async (config) => {
    const nc = await connect({ servers: config.natsUrl, name: "sluice-bench-ceiling" })
    const js = jetstream(nc)
    const agent = makeAgent(config.connectionsPerOrigin)
    for (const destination of config.destinations) {
      const consumer = await js.consumers.get(config.stream, destination.consumer)
      let waiting: Array<JsMsg> = []
      let head = 0
      let inFlight = 0
      const deliver = (msg: JsMsg) =>
        post(agent, destination.url, msg.data).then(
          (status) => (status >= 200 && status < 300 ? msg.ack() : msg.nak()),
          () => msg.nak()
        )
      const pump = () => {
        while (inFlight < config.concurrency && head < waiting.length) {
          const msg = waiting[head++]!
          if (head === waiting.length) {
            waiting = []
            head = 0
          }
          inFlight += 1
          void deliver(msg).finally(() => {
            inFlight -= 1
            pump()
          })
        }
      }
      await consumer.consume({
        max_messages: PULL_BATCH,
        callback: (msg) => {
          waiting.push(msg)
          pump()
        }
      })
    }
  }
})
