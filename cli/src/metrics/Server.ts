/**
 * A tiny HTTP server (node:http) that serves Effect's metrics at `GET /metrics` in the Prometheus
 * text format, for the life of a scope. Read-only; binds where it is told (the CLI: 127.0.0.1).
 *
 * @since 0.2.0
 * @internal
 */
import * as Effect from "effect/Effect"
import * as Metric from "effect/Metric"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { fail } from "../CliError.js"
import * as Prometheus from "./Prometheus.js"

/**
 * @since 0.2.0
 * @internal
 */
export interface MetricsServer {
  readonly host: string
  readonly port: number
  /** `http://host:port/metrics` */
  readonly url: string
}

/**
 * Starts the server on `host:port` (port 0: a free one) and stops it when the scope closes.
 *
 * @since 0.2.0
 * @internal
 */
export const serve = (options: { readonly host: string; readonly port: number }) =>
  Effect.acquireRelease(
    Effect.async<{ server: http.Server; info: MetricsServer }, ReturnType<typeof fail>>((resume) => {
      const server = http.createServer((req, res) => {
        const path = (req.url ?? "/").split("?")[0]
        if (path !== "/metrics") {
          res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end("not found: try /metrics\n")
          return
        }
        if (req.method !== "GET" && req.method !== "HEAD") {
          res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" }).end("method not allowed\n")
          return
        }
        // The registry is synchronous and in memory: read it without a runtime. Only the library's
        // series: Effect's own fiber metrics include an "active" counter that goes down.
        const body = Prometheus.render(Metric.unsafeSnapshot(), { prefix: "modulo_group_" })
        res.writeHead(200, { "content-type": Prometheus.contentType, "cache-control": "no-store" })
        res.end(req.method === "HEAD" ? undefined : body)
      })
      const onError = (error: NodeJS.ErrnoException) =>
        resume(Effect.fail(fail(`cannot serve metrics on ${options.host}:${options.port}: ${error.message}`, error)))
      server.once("error", onError)
      server.listen(options.port, options.host, () => {
        server.off("error", onError)
        const address = server.address() as AddressInfo
        const host = address.family === "IPv6" ? `[${address.address}]` : address.address
        resume(Effect.succeed({
          server,
          info: { host: address.address, port: address.port, url: `http://${host}:${address.port}/metrics` }
        }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  ).pipe(Effect.map(({ info }) => info))
