/*
 * tune.so: an LD_PRELOAD shim that sets usrsctp's sysctls from the environment.
 *
 * The example programs take no options for the stack's timers. Each of them calls
 * usrsctp_sysctl_set_sctp_no_csum_on_loopback() right after usrsctp_init(); this shim
 * wraps that call: it runs the real setter, then, for every USRSCTP_<name> variable that is
 * set, calls usrsctp_sysctl_set_sctp_<name>(value) and reports `[tune] <name>=<value> rc=<rc>`
 * on stderr, so a test can see that the setting took.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*sysctl_setter)(uint32_t);

/* The sysctls a test may set, in the order they are applied. */
static const char *const tunable[] = {
  "rto_min_default",
  "rto_max_default",
  "rto_initial_default",
  "init_rto_max_default",
  "heartbeat_interval_default",
  "path_rtx_max_default",
  "assoc_rtx_max_default",
  "path_pf_threshold",
  "debug_on",
};

static void apply(const char *name) {
  char variable[64];
  char setter_name[96];
  snprintf(variable, sizeof variable, "USRSCTP_%s", name);
  const char *text = getenv(variable);
  if (text == NULL) return;
  char *end = NULL;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value > UINT32_MAX) {
    fprintf(stderr, "[tune] %s=%s is not a 32-bit unsigned integer: ignored\n", name, text);
    return;
  }
  snprintf(setter_name, sizeof setter_name, "usrsctp_sysctl_set_sctp_%s", name);
  sysctl_setter setter = (sysctl_setter)dlsym(RTLD_DEFAULT, setter_name);
  if (setter == NULL) {
    fprintf(stderr, "[tune] %s=%s: %s not found\n", name, text, setter_name);
    return;
  }
  int rc = setter((uint32_t)value);
  fprintf(stderr, "[tune] %s=%s rc=%d\n", name, text, rc);
}

int usrsctp_sysctl_set_sctp_no_csum_on_loopback(uint32_t value) {
  sysctl_setter real =
    (sysctl_setter)dlsym(RTLD_NEXT, "usrsctp_sysctl_set_sctp_no_csum_on_loopback");
  int rc = real == NULL ? -1 : real(value);
  for (size_t index = 0; index < sizeof tunable / sizeof tunable[0]; index++) apply(tunable[index]);
  return rc;
}
