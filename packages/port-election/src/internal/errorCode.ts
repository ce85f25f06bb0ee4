/**
 * The `code` of a Node.js system error (`ENOENT`, `EEXIST`...), or the error as text: what
 * the per-user files (the secret, the socket directory) report when the OS refuses them.
 */
export const errorCode = (error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : String(error)
