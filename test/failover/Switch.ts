/**
 * A TCP switch on loopback: what a virtual IP, a DNS name or a managed service's endpoint does for
 * clients during a PostgreSQL failover. Every accepted connection is forwarded to the current
 * target; `switchTo(port)` points new connections at another server and closes every existing one
 * (as a moved VIP or a proxy that follows the leader does), so clients must reconnect.
 */
import * as net from "node:net"

export interface Switch {
  /** The port clients connect to. */
  readonly port: number
  /** The port connections are forwarded to now. */
  readonly target: () => number
  /** New connections go to `port`; every open connection is closed. */
  readonly switchTo: (port: number) => void
  /** Open client connections. */
  readonly connections: () => number
  readonly close: () => Promise<void>
}

export const startSwitch = (initialTarget: number): Promise<Switch> =>
  new Promise((resolve, reject) => {
    let target = initialTarget
    const pairs = new Set<{ readonly client: net.Socket; readonly upstream: net.Socket }>()

    const server = net.createServer((client) => {
      client.setNoDelay(true)
      const upstream = net.connect(target, "127.0.0.1")
      upstream.setNoDelay(true)
      const pair = { client, upstream }
      pairs.add(pair)
      const drop = () => {
        pairs.delete(pair)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", drop)
      client.on("close", drop)
      upstream.on("error", drop)
      upstream.on("close", drop)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        target: () => target,
        switchTo: (port) => {
          target = port
          for (const { client, upstream } of [...pairs]) {
            client.destroy()
            upstream.destroy()
          }
          pairs.clear()
        },
        connections: () => pairs.size,
        close: () =>
          new Promise<void>((done) => {
            for (const { client, upstream } of pairs) {
              client.destroy()
              upstream.destroy()
            }
            pairs.clear()
            server.close(() => done())
          })
      })
    })
  })
