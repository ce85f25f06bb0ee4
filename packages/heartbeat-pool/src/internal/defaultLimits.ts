/**
 * The limits a server applies where its options name none: the one place the machine, the
 * server's client endpoint and the decoded configuration take them from.
 */
export const defaultLimits = {
  maxClientsPerServer: 10_000,
  maxSeatsPerClient: 64,
  maxPendingReservations: 1_000,
  maxShareSeats: 16,
  maxMessageBytes: 8_192,
} as const
