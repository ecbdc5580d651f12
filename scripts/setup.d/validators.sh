#!/usr/bin/env bash
# The validators the tests run, installed idempotently into the test bed's Python venv
# (shared with the other setup parts):
#   - check-jsonschema, with the Compose Specification schema it vendors, for
#     docker-compose.yml, and with KEDA's CRD schemas kept in infra/kubernetes/schemas/
#     (tests/tests/deployment.rs);
#   - kubernetes-validate, with the Kubernetes API schemas it ships, for the manifests;
#   - schemathesis, which checks the HTTP trigger against its OpenAPI document
#     (docs/openapi/http-trigger.yaml; tests/tests/http_trigger.rs).
# No Docker engine or cluster is needed (none runs here); see README "Deployment".
set -euo pipefail
home="${FERRY_TESTBED_HOME:-$HOME/.cache/ferry-testbed}"
mkdir -p "$home"
venv="$home/venv"

# The venv: create it only if no other setup part did.
if [ ! -x "$venv/bin/python" ]; then
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then apt-get update -qq; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    /usr/bin/python3 -m venv "$venv"
  fi
fi
if [ ! -x "$venv/bin/check-jsonschema" ]; then
  "$venv/bin/pip" install -q 'check-jsonschema>=0.33,<1'
fi
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  "$venv/bin/pip" install -q 'kubernetes-validate>=1.37,<2'
fi
if [ ! -x "$venv/bin/schemathesis" ]; then
  "$venv/bin/pip" install -q 'schemathesis>=4.30,<5'
fi
echo "validators: schemathesis $("$venv/bin/pip" show schemathesis | awk '/^Version/{print $2}'), check-jsonschema $("$venv/bin/check-jsonschema" --version | awk '{print $NF}'), kubernetes-validate $("$venv/bin/pip" show kubernetes-validate | awk '/^Version/{print $2}') in $venv"
