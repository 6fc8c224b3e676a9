/**
 * The original design, rebuilt from issue 7's description so that it can be measured beside
 * modulo-group in the same run, on the same database. Only `pg`: the bench also transpiles this file
 * to plain JavaScript to run members as OS processes (bench/original-member.mjs).
 *
 * One table of records (group, instance id, instance_count, instance_modulo, boss_id, updated_at),
 * unique on the instance id and on (group, instance_modulo). Each member loops on one connection:
 *
 * 1. read all records of the group; live = updated within 10 s, the rest dead;
 * 2. no own record: insert one with a random negative modulo (-1000 to -1999), loop;
 * 3. boss = the boss id voted by a strict majority of live records, if that member is live; none:
 *    set own vote to the lowest live instance id, save, sleep 0.1 s, loop;
 * 4. save own record (touch updated_at, instance_count = live count);
 * 5. if boss and dead records exist: delete them, loop;
 * 6. if the live modulos are not exactly 0..count-1: when own modulo is out of range, try each
 *    free modulo in turn (the unique index rejects collisions); sleep 0.1 s, loop;
 * 7. otherwise work when due, else sleep min(0.5 s, time to the next work).
 *
 * On exit, delete own record. "Working" below means reaching step 7: the member then considers its
 * (modulo, count) settled and works on it at the work interval.
 */
import { randomUUID } from "node:crypto"
import pg from "pg"

export const TABLE = "original_instances"

export const createTable = async (client: pg.ClientBase): Promise<void> => {
  await client.query(`
    CREATE TABLE IF NOT EXISTS ${TABLE} (
      group_name      text        NOT NULL,
      instance_id     text        NOT NULL,
      instance_count  integer     NOT NULL DEFAULT 0,
      instance_modulo integer     NOT NULL,
      boss_id         text,
      updated_at      timestamptz NOT NULL DEFAULT now()
    )`)
  await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${TABLE}_instance ON ${TABLE} (instance_id)`)
  await client.query(`CREATE UNIQUE INDEX IF NOT EXISTS ${TABLE}_modulo ON ${TABLE} (group_name, instance_modulo)`)
}

export interface Work {
  readonly modulo: number
  readonly count: number
}

export interface OriginalOptions {
  readonly url: string
  readonly group: string
  /** Work interval (the original's figures: 0.2 s). */
  readonly workIntervalMs?: number
  /** Liveness window (10 s). */
  readonly liveMs?: number
  /** Called when the member starts working on a (modulo, count), or stops (undefined). */
  readonly onWork?: (work: Work | undefined, at: number) => void
  /** Called for every statement sent. */
  readonly onStatement?: () => void
}

interface Row {
  instance_id: string
  instance_modulo: number
  boss_id: string | null
  live: boolean
}

const UNIQUE_VIOLATION = "23505"

export class OriginalMember {
  readonly id = randomUUID()
  private readonly client: pg.Client
  private running = false
  private crashed = false
  private loop: Promise<void> | undefined
  private wake: (() => void) | undefined
  private current: Work | undefined
  private nextWork = 0
  private readonly workIntervalMs: number
  private readonly liveMs: number

  constructor(private readonly options: OriginalOptions) {
    this.client = new pg.Client({ connectionString: options.url, application_name: "modulo-group-bench-original" })
    this.client.on("error", () => undefined)
    this.workIntervalMs = options.workIntervalMs ?? 200
    this.liveMs = options.liveMs ?? 10_000
  }

  /** Opens the connection (not part of a join's time: the original kept one open). */
  connect(): Promise<void> {
    return this.client.connect()
  }

  /** Starts the loop. */
  start(): void {
    this.running = true
    this.loop = this.run().catch((e) => {
      if (!this.crashed) console.error(`original member ${this.id} died:`, e)
    })
  }

  /** Graceful exit: the loop stops, then the member deletes its record. */
  async stop(): Promise<void> {
    this.running = false
    this.wake?.()
    await this.loop
    this.setWork(undefined)
    await this.query(`DELETE FROM ${TABLE} WHERE instance_id = $1`, [this.id]).catch(() => undefined)
    await this.client.end().catch(() => undefined)
  }

  /** Crash: the loop and the connection stop at once; the record stays until the others judge it dead. */
  crash(): void {
    this.crashed = true
    this.running = false
    this.wake?.()
    this.setWork(undefined)
    ;(this.client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
  }

  private query<R extends pg.QueryResultRow>(text: string, values: ReadonlyArray<unknown>) {
    this.options.onStatement?.()
    return this.client.query<R>(text, values as Array<unknown>)
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, Math.max(0, ms))
      function done() {
        clearTimeout(timer)
        resolve()
      }
      this.wake = done
    })
  }

  private setWork(work: Work | undefined) {
    const same = work !== undefined && this.current !== undefined && work.modulo === this.current.modulo &&
      work.count === this.current.count
    if (same || (work === undefined && this.current === undefined)) return
    this.current = work
    this.options.onWork?.(work, performance.now())
  }

  private async run(): Promise<void> {
    const { group } = this.options
    while (this.running) {
      const { rows } = await this.query<Row>(
        `SELECT instance_id, instance_modulo, boss_id, updated_at > now() - $2 * interval '1 millisecond' AS live
           FROM ${TABLE} WHERE group_name = $1`,
        [group, this.liveMs]
      )
      if (!this.running) break
      const live = rows.filter((r) => r.live)
      const dead = rows.filter((r) => !r.live)
      const own = rows.find((r) => r.instance_id === this.id)
      if (own === undefined) {
        this.setWork(undefined)
        const modulo = -1000 - Math.floor(Math.random() * 1000)
        await this.query(
          `INSERT INTO ${TABLE} (group_name, instance_id, instance_count, instance_modulo, updated_at)
           VALUES ($1, $2, 0, $3, now())`,
          [group, this.id, modulo]
        ).catch((e) => {
          if (e?.code !== UNIQUE_VIOLATION) throw e
        })
        continue
      }
      const votes = new Map<string, number>()
      for (const r of live) if (r.boss_id !== null) votes.set(r.boss_id, (votes.get(r.boss_id) ?? 0) + 1)
      let boss: string | undefined
      for (const [candidate, n] of votes) {
        if (n * 2 > live.length && live.some((r) => r.instance_id === candidate)) boss = candidate
      }
      if (boss === undefined) {
        this.setWork(undefined)
        const lowest = live.map((r) => r.instance_id).sort()[0] ?? this.id
        await this.query(`UPDATE ${TABLE} SET boss_id = $2, updated_at = now() WHERE instance_id = $1`, [this.id, lowest])
        await this.sleep(100)
        continue
      }
      await this.query(`UPDATE ${TABLE} SET updated_at = now(), instance_count = $2 WHERE instance_id = $1`, [
        this.id,
        live.length
      ])
      if (boss === this.id && dead.length > 0) {
        await this.query(`DELETE FROM ${TABLE} WHERE instance_id = ANY($1)`, [dead.map((r) => r.instance_id)])
        continue
      }
      const count = live.length
      const modulos = live.map((r) => r.instance_modulo).sort((a, b) => a - b)
      if (!modulos.every((m, i) => m === i)) {
        this.setWork(undefined)
        if (own.instance_modulo < 0 || own.instance_modulo >= count) {
          const taken = new Set(modulos)
          for (let m = 0; m < count; m++) {
            if (taken.has(m)) continue
            const moved = await this.query(`UPDATE ${TABLE} SET instance_modulo = $2 WHERE instance_id = $1`, [this.id, m])
              .then(() => true, (e) => {
                if (e?.code === UNIQUE_VIOLATION) return false
                throw e
              })
            if (moved) break
          }
        }
        await this.sleep(100)
        continue
      }
      this.setWork({ modulo: own.instance_modulo, count })
      const now = performance.now()
      if (now >= this.nextWork) {
        // The work itself is not the coordination's cost: a no-op here.
        this.nextWork = now + this.workIntervalMs
        continue
      }
      await this.sleep(Math.min(500, this.nextWork - now))
    }
  }
}
