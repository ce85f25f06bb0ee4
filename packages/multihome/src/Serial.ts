/**
 * Serial number arithmetic (RFC 1982) for the 32-bit TSN and the 16-bit SSN of RFC 9260
 * (§1.6: "comparisons and arithmetic on TSNs in this document SHOULD use Serial Number
 * Arithmetic as defined in RFC 1982 where SERIAL_BITS = 32", and 16 for SSNs).
 *
 * Two numbers exactly half the space apart (2^31, or 2^15) are undefined in RFC 1982: here
 * neither is less than the other, so `lt32(a, b)` and `lt32(b, a)` are both false and both
 * `lte32` answers are false unless `a === b`. Inputs are integers in range (0 … 2^32 − 1 or
 * 0 … 2^16 − 1); results of `add*` are always in range.
 *
 * @since 0.1.0
 */

const half32 = 0x8000_0000
const half16 = 0x8000

/**
 * `a < b` in 32-bit serial arithmetic (RFC 1982 §3.2).
 *
 * @since 0.1.0
 * @category tsn
 */
export const lt32 = (a: number, b: number): boolean => a !== b && (b - a) >>> 0 < half32

/**
 * `a ≤ b` in 32-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category tsn
 */
export const lte32 = (a: number, b: number): boolean => a === b || lt32(a, b)

/**
 * `a > b` in 32-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category tsn
 */
export const gt32 = (a: number, b: number): boolean => lt32(b, a)

/**
 * `a ≥ b` in 32-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category tsn
 */
export const gte32 = (a: number, b: number): boolean => a === b || lt32(b, a)

/**
 * `a + n` modulo 2^32 (RFC 1982 §3.1; `n` may be negative here, for stepping back).
 *
 * @since 0.1.0
 * @category tsn
 */
export const add32 = (a: number, n: number): number => (a + n) >>> 0

/**
 * The signed distance `a − b`, in −2^31 … 2^31 − 1: positive when `a` is after `b`.
 * At exactly 2^31 apart (undefined in RFC 1982) it is −2^31.
 *
 * @since 0.1.0
 * @category tsn
 */
export const diff32 = (a: number, b: number): number => (a - b) | 0

/**
 * `a < b` in 16-bit serial arithmetic (SSNs, RFC 9260 §6.5).
 *
 * @since 0.1.0
 * @category ssn
 */
export const lt16 = (a: number, b: number): boolean => a !== b && ((b - a) & 0xffff) < half16

/**
 * `a ≤ b` in 16-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category ssn
 */
export const lte16 = (a: number, b: number): boolean => a === b || lt16(a, b)

/**
 * `a > b` in 16-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category ssn
 */
export const gt16 = (a: number, b: number): boolean => lt16(b, a)

/**
 * `a ≥ b` in 16-bit serial arithmetic.
 *
 * @since 0.1.0
 * @category ssn
 */
export const gte16 = (a: number, b: number): boolean => a === b || lt16(b, a)

/**
 * `a + n` modulo 2^16 (the SSN after 65535 is 0, RFC 9260 §3.3.1).
 *
 * @since 0.1.0
 * @category ssn
 */
export const add16 = (a: number, n: number): number => (a + n) & 0xffff

/**
 * The signed distance `a − b` in 16-bit serial arithmetic, in −2^15 … 2^15 − 1.
 *
 * @since 0.1.0
 * @category ssn
 */
export const diff16 = (a: number, b: number): number => (((a - b) & 0xffff) << 16) >> 16
