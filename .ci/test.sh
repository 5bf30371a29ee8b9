#!/usr/bin/env bash
# The pytest step of `make test`: provision what the suite needs outside the venv (apt packages, a
# throwaway PostgreSQL, tool paths; see .ci/provision.sh), then run pytest with the given arguments.
# After one `make test` (which builds .venv), `.ci/test.sh tests/test_tune.py -k postgres` runs a
# provisioned subset; a bare `.venv/bin/pytest` skips the tests that need a provisioned part.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/pytest ]] || { echo "test: .venv/bin/pytest is missing; run \`make test\` (or \`make venv\`) first" >&2; exit 1; }

# shellcheck source=.ci/provision.sh
source .ci/provision.sh
kit_provision    # its EXIT trap stops and deletes the PostgreSQL cluster however this script ends

status=0
.venv/bin/pytest "$@" || status=$?
if ((status == 5)); then
  echo "test: error: pytest collected no tests (exit 5)" >&2
fi
exit "$status"
