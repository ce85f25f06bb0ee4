#!/usr/bin/env bash
# The Debian packages the test suites need: installed here when root, else the exact
# command to run. Never a silent skip: a suite that needs a missing package would fail.
#
#   scripts/ensure-system-deps.sh               every package below (what `npm test` runs)
#   scripts/ensure-system-deps.sh PACKAGE...    only these (e.g. `npm start` for usrsctp's client)
set -euo pipefail

# file the package installs -> Debian package
declare -A needed=(
  [/usr/bin/etcd]=etcd-server
  [/usr/lib/usrsctp/client]=libusrsctp-examples
  # gcc builds the LD_PRELOAD shims of packages/testkit/native for the usrsctp interop tests.
  [/usr/bin/gcc]=gcc
  [/usr/include/stdio.h]=libc6-dev
  [/usr/bin/curl]=curl
  [/usr/bin/wget]=wget
  [/usr/bin/arping]=iputils-arping
  # The TCP_REPAIR tests run their servers in network namespaces with a capability bounding set.
  [/bin/ip]=iproute2
  [/sbin/capsh]=libcap2-bin
  # The documentation site's browser test drives headless Chromium.
  [/usr/bin/chromium]=chromium
)

wanted() {
  [ "$#" -eq 1 ] && return 0
  local package=$1
  shift
  local name
  for name in "$@"; do [ "$name" = "$package" ] && return 0; done
  return 1
}

for name in "$@"; do
  known=false
  for package in "${needed[@]}"; do [ "$package" = "$name" ] && known=true; done
  if [ "$known" = false ]; then
    echo "ensure-system-deps: unknown package '$name' (known: ${needed[*]})" >&2
    exit 2
  fi
done

missing=()
for file in "${!needed[@]}"; do
  package=${needed[$file]}
  wanted "$package" "$@" || continue
  [ -e "$file" ] || missing+=("$package")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  echo "Installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
else
  echo "Understudy needs Debian packages that are not installed. Run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}    (as root, e.g. with sudo)" >&2
  exit 1
fi
