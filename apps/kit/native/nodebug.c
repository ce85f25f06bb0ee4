/*
 * nodebug.so: an LD_PRELOAD shim for usrsctp's example programs.
 *
 * tsctp and discard_server switch usrsctp's debug log on at start-up (about 20 MB/s on
 * stderr), which slows them several times. Defining the setter here, ahead of libusrsctp in
 * the lookup order, turns that call into a no-op, so a throughput comparison against tsctp
 * measures the stack and not its logging.
 */
#include <stdint.h>

int usrsctp_sysctl_set_sctp_debug_on(uint32_t value) {
  (void)value;
  return 0;
}
