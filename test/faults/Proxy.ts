/**
 * A TCP proxy on loopback between members and PostgreSQL, to make the database slow, unreachable or
 * hung without touching the server:
 *
 * - `delay(ms)`: every chunk, both ways, is held `ms` before it is forwarded (order kept);
 * - `blackhole()`: nothing is forwarded any more, both ways, and new connections are accepted but
 *   never connected: as a network partition looks to both ends (no FIN, no RST). Held bytes are kept;
 * - `restore()`: forwarding resumes and the held bytes are delivered, as TCP retransmits them when
 *   a partition heals;
 * - `refuse()`: every connection is reset and new ones are closed at once (a server that is down);
 * - `trap(pattern)`: the first connection whose client sends `pattern` (e.g. "FOR UPDATE") has that
 *   chunk forwarded and is then blackholed alone: a member that hangs while holding a lock;
 * - `sever()`: every open connection goes half-open: its server side is closed (the backend exits),
 *   the client is told nothing and what it sends is dropped, as when a firewall or NAT drops the flow.
 *   New connections pass. Returns how many were severed.
 */
import * as net from "node:net"

type Mode = { readonly _tag: "pass"; readonly delayMs: number } | { readonly _tag: "blackhole" } | { readonly _tag: "refuse" }

interface Pipe {
  readonly client: net.Socket
  server: net.Socket | undefined
  /** Held while blackholed: [toServer, chunk]. */
  readonly held: Array<readonly [boolean, Buffer]>
  trapped: boolean
  /** Half-open: the server side is gone, the client hears nothing. */
  severed: boolean
  /** Chunks in flight through a delay, per direction, to keep their order. */
  lastDue: { toServer: number; toClient: number }
}

export interface Proxy {
  readonly port: number
  readonly delay: (ms: number) => void
  readonly blackhole: () => void
  readonly restore: () => void
  readonly refuse: () => void
  readonly trap: (pattern: string) => void
  readonly sever: () => number
  readonly trapped: () => number
  readonly connections: () => number
  readonly close: () => Promise<void>
}

export const startProxy = (target: { host: string; port: number }): Promise<Proxy> =>
  new Promise((resolve, reject) => {
    let mode: Mode = { _tag: "pass", delayMs: 0 }
    let trapPattern: Buffer | undefined
    const pipes = new Set<Pipe>()

    const blocked = (pipe: Pipe) => mode._tag === "blackhole" || pipe.trapped

    const deliver = (pipe: Pipe, toServer: boolean, chunk: Buffer) => {
      const to = toServer ? pipe.server : pipe.client
      if (to === undefined || to.destroyed) return
      to.write(chunk)
    }

    const forward = (pipe: Pipe, toServer: boolean, chunk: Buffer) => {
      if (pipe.severed) return
      if (blocked(pipe) || pipe.server === undefined) {
        pipe.held.push([toServer, chunk])
        return
      }
      if (toServer && trapPattern !== undefined && chunk.includes(trapPattern)) {
        trapPattern = undefined
        deliver(pipe, true, chunk)
        pipe.trapped = true
        return
      }
      const delayMs = mode._tag === "pass" ? mode.delayMs : 0
      if (delayMs === 0 && pipe.lastDue[toServer ? "toServer" : "toClient"] <= Date.now()) {
        deliver(pipe, toServer, chunk)
        return
      }
      const key = toServer ? "toServer" : "toClient"
      const due = Math.max(Date.now() + delayMs, pipe.lastDue[key])
      pipe.lastDue[key] = due
      setTimeout(() => {
        if (blocked(pipe)) pipe.held.push([toServer, chunk])
        else deliver(pipe, toServer, chunk)
      }, due - Date.now())
    }

    const connectUpstream = (pipe: Pipe) => {
      const server = net.connect(target.port, target.host)
      pipe.server = server
      server.setNoDelay(true)
      server.on("data", (chunk: Buffer) => forward(pipe, false, chunk))
      server.on("error", () => {
        if (!pipe.severed) pipe.client.destroy()
      })
      server.on("close", () => {
        if (!pipe.severed) pipe.client.destroy()
      })
      flush(pipe)
    }

    const flush = (pipe: Pipe) => {
      if (blocked(pipe) || pipe.server === undefined) return
      const held = pipe.held.splice(0)
      for (const [toServer, chunk] of held) deliver(pipe, toServer, chunk)
    }

    const server = net.createServer((client) => {
      client.setNoDelay(true)
      const pipe: Pipe = { client, server: undefined, held: [], trapped: false, severed: false, lastDue: { toServer: 0, toClient: 0 } }
      if (mode._tag === "refuse") {
        client.destroy()
        return
      }
      pipes.add(pipe)
      client.on("data", (chunk: Buffer) => forward(pipe, true, chunk))
      client.on("error", () => pipe.server?.destroy())
      client.on("close", () => {
        pipe.server?.destroy()
        pipes.delete(pipe)
      })
      // While blackholed, a new connection is accepted (the SYN got through?) but never connected.
      if (mode._tag !== "blackhole") connectUpstream(pipe)
    })
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      resolve({
        port,
        delay: (ms) => {
          mode = { _tag: "pass", delayMs: ms }
        },
        blackhole: () => {
          mode = { _tag: "blackhole" }
        },
        restore: () => {
          mode = { _tag: "pass", delayMs: 0 }
          for (const pipe of pipes) {
            if (pipe.severed) continue
            pipe.trapped = false
            if (pipe.server === undefined) connectUpstream(pipe)
            else flush(pipe)
          }
        },
        refuse: () => {
          mode = { _tag: "refuse" }
          for (const pipe of pipes) {
            pipe.client.resetAndDestroy()
            pipe.server?.destroy()
          }
          pipes.clear()
        },
        trap: (pattern) => {
          trapPattern = Buffer.from(pattern, "utf8")
        },
        sever: () => {
          let severed = 0
          for (const pipe of pipes) {
            if (pipe.severed) continue
            pipe.severed = true
            pipe.held.length = 0
            pipe.server?.destroy()
            severed++
          }
          return severed
        },
        trapped: () => [...pipes].filter((p) => p.trapped).length,
        connections: () => pipes.size,
        close: () =>
          new Promise<void>((done) => {
            for (const pipe of pipes) {
              pipe.client.destroy()
              pipe.server?.destroy()
            }
            server.close(() => done())
          })
      })
    })
  })
