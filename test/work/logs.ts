/**
 * Log capture for the `Work` tests: a logger that keeps each line's level and first message part
 * (instead of printing it), and the layer that installs it.
 */
import { Effect, Logger } from "effect"

export const captureLogs = Effect.sync(() => {
  const lines: Array<{ readonly level: string; readonly message: string }> = []
  const logger = Logger.make(({ logLevel, message }) => {
    const first = Array.isArray(message) ? message[0] : message
    lines.push({ level: logLevel.label, message: String(first) })
  })
  return { lines, layer: Logger.replace(Logger.defaultLogger, logger) }
})
