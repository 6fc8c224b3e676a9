/**
 * Types what `globalSetup.ts` hands to test files through `provide`/`inject`.
 */
import type {} from "vitest"

declare module "vitest" {
  export interface ProvidedContext {
    /** Connection URL of the PostgreSQL database the tests share. */
    readonly databaseUrl: string
  }
}
