#!/usr/bin/env bash
# Host-kernel integration and end-to-end tests of the built agent (root; see README "Tests").
set -euo pipefail
cd "$(dirname "$0")/../.."

# pytest runs the tests; prometheus_client's OpenMetrics parser checks our exposition independently.
if ! python3 -c 'import pytest, prometheus_client' 2>/dev/null; then
    echo "  PIP    pytest prometheus_client"
    python3 -m pip install --quiet --disable-pip-version-check pytest prometheus_client
fi
if [ "$(id -u)" != 0 ] && [ "${CI:-}" = true ]; then
    echo "integration tests must run as root on CI" >&2
    exit 1
fi
exec python3 -m pytest -v -s -p no:cacheprovider Tests/integration "$@"
