#!/usr/bin/env bash
# The whole test suite, from a fresh machine: set up the venv, colcon build, colcon test,
# then print every result (colcon test-result --verbose), failing if any test failed.
# Usage: scripts/test.sh [extra pytest args, e.g. -k node]
#        DPT_ROS_CPU_CLASS=avx2 scripts/test.sh   (as on a CPU without AVX-512 / bf16 units,
#        e.g. an AMD Zen 3; classes and what they set: test/support/cpu_class.py)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv=$(scripts/setup_env.sh | tail -n 1)
export PATH="$venv/bin:$PATH"
if [ -n "${DPT_ROS_CPU_CLASS:-}" ]; then
  # Exported here so that every process of the run starts with them; test/conftest.py caps
  # torch's oneDNN in the test process itself (see test/support/cpu_class.py).
  exports=$(python test/support/cpu_class.py "$DPT_ROS_CPU_CLASS")
  eval "$exports"
  export DPT_ROS_CPU_CLASS
  echo "cpu class $DPT_ROS_CPU_CLASS (test/support/cpu_class.py):" ${exports//export /}
fi
# The mock-device dry-run (test/support/tt_mock_device) needs binutils for RISC-V and a C/C++
# compiler, the view's browser tests chromium. As root: install what is missing and require
# both (they must run, not skip).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  scripts/setup_system.sh
  export DPT_TT_MOCK_REQUIRED=1
  export DPT_ROS_BROWSER_REQUIRED=1
fi
# DDS stays on loopback; every test session picks its own domain (see test/conftest.py).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export HF_HUB_OFFLINE=1
ws=${DPT_ROS_WS:-$root/build_ws}
colcon --log-base "$ws/log" build --base-paths "$root" --build-base "$ws/build" \
  --install-base "$ws/install" --event-handlers console_direct- 
pytest_args="-p no:cacheprovider -q -rs ${*:-}"
colcon --log-base "$ws/log" test --base-paths "$root" --build-base "$ws/build" \
  --install-base "$ws/install" --event-handlers console_direct+ \
  --pytest-args $pytest_args
set +e
summary=$(colcon test-result --test-result-base "$ws/build" --verbose)
status=$?
set -e
echo "$summary"
# One plain closing line: 'N passed, N failed, N skipped' (from colcon's own summary).
line=$(echo "$summary" | grep -E '^Summary: [0-9]+ tests?' | tail -n 1)
total=$(echo "$line" | sed -E 's/^Summary: ([0-9]+) tests?.*/\1/')
errors=$(echo "$line" | sed -E 's/.* ([0-9]+) errors?.*/\1/')
failures=$(echo "$line" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
skipped=$(echo "$line" | sed -E 's/.* ([0-9]+) skipped.*/\1/')
if [ -n "$line" ]; then
  echo "tests: $((total - errors - failures - skipped)) passed, $((errors + failures)) failed, $skipped skipped"
fi
if [ -z "$line" ] || [ "$total" -eq 0 ]; then
  echo "error: no test results found (collection failed?)" >&2
  exit 1
fi
exit $status
