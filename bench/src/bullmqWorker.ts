/**
 * The BullMQ baseline's worker, what a Node team would run instead of Sluice: one queue,
 * one worker with the same total concurrency, each job POSTed to its receiver and failed
 * (so BullMQ retries it with its back-off) on anything but a 2xx.
 */
import { Worker } from "bullmq"
import * as Ipc from "./Ipc.js"
import { makeAgent, post } from "./Post.js"
import type { BullmqJob, BullmqProtocol } from "./WorkerProtocol.js"

Ipc.serve<BullmqProtocol>({
  start: async (config) => {
    const agent = makeAgent(config.connectionsPerOrigin)
    const worker = new Worker<BullmqJob>(
      config.queue,
      async (job) => {
        const status = await post(agent, config.urls[job.data.destination]!, job.data.body)
        if (status < 200 || status >= 300) throw new Error(`the receiver answered ${status}`)
      },
      { connection: { host: config.host, port: config.port, maxRetriesPerRequest: null }, concurrency: config.concurrency }
    )
    worker.on("error", (error) => console.error("bullmq worker:", error))
    await worker.waitUntilReady()
  }
})
