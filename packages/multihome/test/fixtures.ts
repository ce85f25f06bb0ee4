/**
 * An INIT sent by usrsctp 0.9.5 (`/usr/lib/usrsctp/client 127.0.0.2 7 0 <L> <P>`),
 * captured from the UDP socket it was sent to: SCTP port 58797 → 7, verification tag 0,
 * initiate tag 0x528027b7, a_rwnd 131072, OS 10, MIS 2048, initial TSN 0xd64b7caf;
 * parameters: ECN Capable (0x8000), Forward-TSN-Supported (0xC000), Supported Extensions
 * (0x8008: chunks 0xC0 0x0F 0xC1 0x80 0x82), Random (0x8002, 32 bytes), Requested HMAC
 * Algorithm (0x8004: SHA-1), Chunk List (0x8003: 0x80 0xC1), Supported Address Types
 * (IPv4, IPv6), IPv6 Address fd00::2, IPv4 Address 192.0.2.2 (the host's eth0 addresses).
 */
export const usrsctpInitHex =
  "e5ad0007000000005ef841d701000080528027b700020000000a0800d64b7caf80000004c000000480080009c00fc18082000000800200243c9247c55f0174529dd265f81bfc1e4958fff1887541134cb033b9e0060fd34c80040006000100008003000680c10000000c00080005000600060014fd00000000000000000000000000000200050008c0000202"
