/**
 * The `etcd3` client, an optional peer dependency: only `@understudy/store/etcd` needs it
 * (gRPC and protobufjs are heavy, and protobufjs has an install script), so it is loaded
 * here with `require` rather than imported, and a missing package is reported as what to
 * install instead of a module-resolution error.
 */
import { createRequire } from "node:module"
import type * as Etcd3 from "etcd3"

/** The error message when `etcd3` is not installed. */
export const missingEtcd3 =
  "@understudy/store/etcd needs the etcd3 package (an optional peer dependency of @understudy/store): npm install etcd3@^1.1.2"

const load = (): typeof Etcd3 => {
  try {
    return createRequire(import.meta.url)("etcd3") as typeof Etcd3
  } catch (error) {
    // Only etcd3 itself missing; a dependency of etcd3 missing is a broken install, as is.
    const missing =
      (error as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" &&
      (error as Error).message.includes("'etcd3'")
    if (missing) throw new Error(missingEtcd3, { cause: error })
    throw error
  }
}

/** The `etcd3` module, loaded when `@understudy/store/etcd` is. */
export const etcd3: typeof Etcd3 = load()
