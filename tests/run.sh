#!/usr/bin/env bash
# The project's test command: installs what the tests need, then runs them all.
# Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# Through the lock of tested versions (CI's minimum-versions run sets DENSENET_CONSTRAINTS=constraints-min.txt;
# an empty value installs the newest releases).
constraints=${DENSENET_CONSTRAINTS-constraints.txt}
python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt ${constraints:+-c "$constraints"}

# The browser test drives Debian's Chromium (Playwright's own browser download does not work offline).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || echo "warning: could not install chromium; the browser test will be skipped"
  else
    echo "warning: chromium is not installed and this is not root; the browser test will be skipped"
  fi
fi

# glibc's allocator otherwise returns freed tensor memory to the kernel on every step (measured: 1.4x on training).
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1000000000}
export MALLOC_TRIM_THRESHOLD_=${MALLOC_TRIM_THRESHOLD_:-1000000000}
export MALLOC_TOP_PAD_=${MALLOC_TOP_PAD_:-268435456}
# OpenMP threads that spin at barriers starve each other when two torch jobs share the 2 cores.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

exec python -m pytest "$@"
