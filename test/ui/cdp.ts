/**
 * A headless Chromium driven over the DevTools protocol, with no dependency: Node 20 has no
 * WebSocket client, so this is the least of one (an HTTP upgrade, masked text frames out, text and
 * continuation frames in, ping answered) and a CDP session over it (commands by id, events by name).
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import type { Duplex } from "node:stream"
import * as os from "node:os"
import * as path from "node:path"

/** The Chromium binary on PATH (Debian's `chromium`), or undefined. */
export const findChromium = (): string | undefined => {
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    try {
      const found = execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim()
      if (found !== "") return found
    } catch {
      // next
    }
  }
  return undefined
}

// --- WebSocket (RFC 6455), client side, text only ---

const encodeFrame = (text: string, opcode = 0x1): Buffer => {
  const payload = Buffer.from(text, "utf8")
  const mask = randomBytes(4)
  const len = payload.length
  const head = len < 126 ? Buffer.alloc(2) : len < 65_536 ? Buffer.alloc(4) : Buffer.alloc(10)
  head[0] = 0x80 | opcode
  if (len < 126) head[1] = 0x80 | len
  else if (len < 65_536) {
    head[1] = 0x80 | 126
    head.writeUInt16BE(len, 2)
  } else {
    head[1] = 0x80 | 127
    head.writeBigUInt64BE(BigInt(len), 2)
  }
  const masked = Buffer.alloc(len)
  for (let i = 0; i < len; i++) masked[i] = payload[i]! ^ mask[i % 4]!
  return Buffer.concat([head, mask, masked])
}

class WebSocketClient {
  private buffer = Buffer.alloc(0)
  private fragments: Array<Buffer> = []
  onMessage: (text: string) => void = () => undefined
  onClose: () => void = () => undefined

  constructor(private readonly socket: Duplex, head: Buffer) {
    socket.on("data", (chunk: Buffer) => this.receive(chunk))
    socket.on("close", () => this.onClose())
    socket.on("error", () => undefined)
    if (head.length > 0) this.receive(head)
  }

  send(text: string): void {
    this.socket.write(encodeFrame(text))
  }

  close(): void {
    this.socket.end(encodeFrame("", 0x8))
  }

  private receive(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk])
    while (this.buffer.length >= 2) {
      const b0 = this.buffer[0]!
      const b1 = this.buffer[1]!
      let len = b1 & 0x7f
      let offset = 2
      if (len === 126) {
        if (this.buffer.length < 4) return
        len = this.buffer.readUInt16BE(2)
        offset = 4
      } else if (len === 127) {
        if (this.buffer.length < 10) return
        len = Number(this.buffer.readBigUInt64BE(2))
        offset = 10
      }
      const masked = (b1 & 0x80) !== 0
      const maskAt = offset
      if (masked) offset += 4
      if (this.buffer.length < offset + len) return
      let payload = this.buffer.subarray(offset, offset + len)
      if (masked) {
        const mask = this.buffer.subarray(maskAt, maskAt + 4)
        payload = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!))
      }
      this.buffer = this.buffer.subarray(offset + len)
      const opcode = b0 & 0x0f
      const fin = (b0 & 0x80) !== 0
      if (opcode === 0x9) this.socket.write(encodeFrame(payload.toString("utf8"), 0xa))
      else if (opcode === 0x8) this.socket.end()
      else if (opcode === 0x1 || opcode === 0x0) {
        this.fragments.push(Buffer.from(payload))
        if (fin) {
          const text = Buffer.concat(this.fragments).toString("utf8")
          this.fragments = []
          this.onMessage(text)
        }
      }
    }
  }
}

const connectWebSocket = (url: string): Promise<WebSocketClient> =>
  new Promise((resolve, reject) => {
    const u = new URL(url)
    const req = http.request({
      host: u.hostname,
      port: u.port,
      path: u.pathname + u.search,
      headers: {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Key": randomBytes(16).toString("base64"),
        "Sec-WebSocket-Version": "13"
      }
    })
    req.on("upgrade", (_res, socket, head) => resolve(new WebSocketClient(socket, head)))
    req.on("response", (res) => reject(new Error(`WebSocket upgrade refused: HTTP ${res.statusCode}`)))
    req.on("error", reject)
    req.end()
  })

const getJson = <A>(url: string): Promise<A> =>
  new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = ""
      res.on("data", (c: Buffer) => (body += c.toString("utf8")))
      res.on("end", () => {
        try {
          resolve(JSON.parse(body) as A)
        } catch (e) {
          reject(e)
        }
      })
    }).on("error", reject)
  })

// --- the browser and one page ---

export interface Page {
  /** A CDP command on the page's session. */
  send<A = any>(method: string, params?: Record<string, unknown>): Promise<A>
  /** A JavaScript expression's value (JSON-serialisable), evaluated in the page. */
  evaluate<A = any>(expression: string): Promise<A>
  /** Polls `expression` until it is truthy; resolves with its value and the ms it took. */
  waitFor<A = any>(expression: string, timeoutMs: number, what?: string): Promise<{ value: A; ms: number }>
  /** Loads `url` (a new document: a change of the hash alone fires no load event, set location.hash). */
  navigate(url: string): Promise<void>
  screenshot(file: string): Promise<void>
}

export interface Browser {
  readonly page: Page
  close(): Promise<void>
}

/** Starts headless Chromium with a throwaway profile and opens one page (about:blank). */
export const launch = async (binary: string, viewport = { width: 1180, height: 860 }): Promise<Browser> => {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mg-chromium-"))
  const child: ChildProcess = spawn(
    binary,
    [
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--remote-debugging-address=127.0.0.1",
      "--remote-debugging-port=0",
      `--user-data-dir=${profile}`,
      "about:blank"
    ],
    { stdio: ["ignore", "ignore", "pipe"] }
  )
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  const cleanup = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM")
      const timer = setTimeout(() => child.kill("SIGKILL"), 3_000)
      await exited
      clearTimeout(timer)
    }
    fs.rmSync(profile, { recursive: true, force: true })
  }
  try {
    const browserUrl = await new Promise<string>((resolve, reject) => {
      let err = ""
      const timer = setTimeout(() => reject(new Error(`chromium did not start within 30 s: ${err.slice(-2000)}`)), 30_000)
      child.stderr!.on("data", (c: Buffer) => {
        err += c.toString("utf8")
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err)
        if (m !== null) {
          clearTimeout(timer)
          resolve(m[1]!)
        }
      })
      child.once("exit", (code, signal) => {
        clearTimeout(timer)
        reject(new Error(`chromium exited (${code ?? signal}): ${err.slice(-2000)}`))
      })
    })
    const port = new URL(browserUrl).port
    const targets = await getJson<Array<{ type: string; webSocketDebuggerUrl: string }>>(`http://127.0.0.1:${port}/json/list`)
    const target = targets.find((t) => t.type === "page")
    if (target === undefined) throw new Error("chromium has no page target")
    const ws = await connectWebSocket(target.webSocketDebuggerUrl)
    let nextId = 1
    const pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>()
    const listeners = new Map<string, Array<(params: any) => void>>()
    ws.onMessage = (text) => {
      const msg = JSON.parse(text) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: unknown }
      if (msg.id !== undefined) {
        const p = pending.get(msg.id)
        pending.delete(msg.id)
        if (msg.error !== undefined) p?.reject(new Error(msg.error.message))
        else p?.resolve(msg.result)
      } else if (msg.method !== undefined) {
        for (const f of listeners.get(msg.method) ?? []) f(msg.params)
      }
    }
    ws.onClose = () => {
      for (const p of pending.values()) p.reject(new Error("DevTools connection closed"))
      pending.clear()
    }
    const send = <A>(method: string, params: Record<string, unknown> = {}): Promise<A> =>
      new Promise<A>((resolve, reject) => {
        const id = nextId++
        pending.set(id, { resolve, reject })
        ws.send(JSON.stringify({ id, method, params }))
      })
    const once = (method: string) =>
      new Promise<any>((resolve) => {
        const list = listeners.get(method) ?? []
        const f = (params: any) => {
          listeners.set(method, (listeners.get(method) ?? []).filter((g) => g !== f))
          resolve(params)
        }
        list.push(f)
        listeners.set(method, list)
      })
    await send("Page.enable")
    await send("Runtime.enable")
    await send("Emulation.setDeviceMetricsOverride", { ...viewport, deviceScaleFactor: 1, mobile: false })
    const evaluate = async <A>(expression: string): Promise<A> => {
      const r = await send<{ result: { value?: A }; exceptionDetails?: { text: string } }>("Runtime.evaluate", {
        expression,
        returnByValue: true
      })
      if (r.exceptionDetails !== undefined) throw new Error(`in the page: ${r.exceptionDetails.text} (${expression})`)
      return r.result.value as A
    }
    const page: Page = {
      send,
      evaluate,
      waitFor: async <A>(expression: string, timeoutMs: number, what = expression) => {
        const started = performance.now()
        let last: unknown
        while (performance.now() - started < timeoutMs) {
          last = await evaluate<A>(expression)
          if (last) return { value: last as A, ms: performance.now() - started }
          await new Promise((r) => setTimeout(r, 20))
        }
        throw new Error(`the page did not show ${what} within ${timeoutMs} ms (last: ${JSON.stringify(last)})`)
      },
      navigate: async (url: string) => {
        const loaded = once("Page.loadEventFired")
        await send("Page.navigate", { url })
        let timer: NodeJS.Timeout | undefined
        await Promise.race([
          loaded,
          new Promise((_, reject) => {
            timer = setTimeout(() => reject(new Error(`${url} did not load within 30 s`)), 30_000)
          })
        ]).finally(() => clearTimeout(timer))
      },
      screenshot: async (file: string) => {
        const r = await send<{ data: string }>("Page.captureScreenshot", { format: "png", captureBeyondViewport: true })
        fs.mkdirSync(path.dirname(file), { recursive: true })
        fs.writeFileSync(file, Buffer.from(r.data, "base64"))
      }
    }
    return {
      page,
      close: async () => {
        ws.close()
        await cleanup()
      }
    }
  } catch (error) {
    await cleanup()
    throw error
  }
}
