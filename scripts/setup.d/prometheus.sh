#!/usr/bin/env bash
# Prometheus for the metrics tests (tests/tests/metrics.rs): the server, which a test runs
# itself on a free loopback port to scrape a worker, and `promtool`, which lints a page.
# Debian's package would also start a system service: the policy-rc.d of the image (or
# the one set here for the install) keeps it from starting. Checks first: a second run
# takes well under a second.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then apt-get update -qq; fi
policy=/usr/sbin/policy-rc.d
own_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  own_policy=1
fi
apt-get install -y -qq --no-install-recommends prometheus
if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
