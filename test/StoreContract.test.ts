import { Layer } from "effect"
import * as InMemoryMembershipStore from "../src/InMemoryMembershipStore.js"
import * as PgMembershipStore from "../src/PgMembershipStore.js"
import { PgLive, randomGroupId } from "./support/Database.js"
import { storeContract } from "./support/StoreContract.js"

storeContract("in-memory", () => InMemoryMembershipStore.layer, (label) => label)
storeContract("postgres", () => PgMembershipStore.layer({ clock: "effect" }).pipe(Layer.provide(PgLive)), (label) => randomGroupId(label))
