#!/usr/bin/env bash
# The Debian packages the test suites need: installed here when root, else the exact
# command to run. Never a silent skip: a suite that needs a missing package would fail.
set -euo pipefail

# binary -> Debian package
declare -A needed=(
  [/usr/bin/etcd]=etcd-server
  [/usr/lib/usrsctp/client]=libusrsctp-examples
  # gcc builds the LD_PRELOAD shims of ../shared/tools/usrsctp for the multihome tests.
  [/usr/bin/gcc]=gcc
  [/usr/include/stdio.h]=libc6-dev
)

missing=()
for binary in "${!needed[@]}"; do
  [ -x "$binary" ] || missing+=("${needed[$binary]}")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "Installing Debian packages the tests need: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
else
  echo "The tests need Debian packages that are not installed. Run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}    (as root, e.g. with sudo)" >&2
  exit 1
fi
