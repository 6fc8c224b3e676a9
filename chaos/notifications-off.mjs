/**
 * `node --import ./chaos/notifications-off.mjs cli/bin/modulo-group.js join ...`: a member with
 * LISTEN/NOTIFY disabled (`notifications: false` in its MembershipConfig), for
 * `npm run chaos -- --notifications off` while `modulo-group join` has no option for it.
 *
 * `join` builds its MembershipConfigInput from its own options and does not read
 * MODULO_GROUP_NOTIFICATIONS, so the runner cannot pass the setting through the CLI. This module
 * changes nothing in the library: a module hook serves `dist/src/MembershipConfig.js` as the real
 * module with `make` wrapped to default `notifications` to false, which is what `join` would do
 * with the option. The runner checks on the database that no member holds a LISTEN connection
 * (application_name `modulo-group/listen`), so a hook that stopped matching fails the run loudly.
 * Once `join` has the option (e.g. `--no-notifications`), the runner passes that instead.
 */
import { register } from "node:module"

const HOOKS = `
const target = /\\/dist\\/src\\/MembershipConfig\\.js$/
export async function load(url, context, next) {
  if (!target.test(url)) return next(url, context)
  const real = JSON.stringify(url + "?real")
  return {
    format: "module",
    shortCircuit: true,
    source: "import * as real from " + real + "\\nexport * from " + real + "\\n" +
      "export const make = (input) => real.make({ ...input, notifications: input?.notifications ?? false })\\n"
  }
}
`

register(`data:text/javascript,${encodeURIComponent(HOOKS)}`)
