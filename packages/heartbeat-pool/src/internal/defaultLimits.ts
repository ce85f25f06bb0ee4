/**
 * The limits applied where the options name none: the one place the machine, the
 * server's client endpoint, the decoded configuration and `ClientGroup` (its receive buffer)
 * take them from.
 */
export const defaultLimits = {
  clientsPerServerMax: 10_000,
  seatsPerClientMax: 64,
  pendingReservationsMax: 1_000,
  shareSeatsMax: 16,
  messageBytesMax: 8_192,
  /**
   * The client endpoint's kernel receive buffer: a thousand clients re-attaching at once
   * arrive together (~2 KiB of kernel memory each, however small), and the system's default
   * (208 KiB) dropped most of them.
   */
  clientReceiveBufferBytes: 4 * 1024 * 1024,
} as const
