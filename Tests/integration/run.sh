#!/usr/bin/env bash
# Host-kernel integration and end-to-end tests of the built agent (root; see README "Tests").
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! python3 -c 'import pytest' 2>/dev/null; then
    echo "  PIP    pytest"
    python3 -m pip install --quiet --disable-pip-version-check pytest
fi
if [ "$(id -u)" != 0 ] && [ "${CI:-}" = true ]; then
    echo "integration tests must run as root on CI" >&2
    exit 1
fi
exec python3 -m pytest -v -s -p no:cacheprovider Tests/integration "$@"
