/** Types of scripts/diagram.mjs, for the test that checks docs/state-machine.md is current. */
export declare const outputPath: string
export declare const generate: (modules: { readonly Transition: unknown; readonly MemberState: unknown }) => string
