/**
 * The limits a server applies where its options name none: the one place the machine, the
 * server's client endpoint and the decoded configuration take them from.
 */
export const defaultLimits = {
  clientsPerServerMax: 10_000,
  seatsPerClientMax: 64,
  pendingReservationsMax: 1_000,
  shareSeatsMax: 16,
  messageBytesMax: 8_192,
} as const
