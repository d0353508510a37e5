#!/usr/bin/env bash
# Create (or reuse) the project venv at .venv with Python 3.12 and the pinned dependencies.
# Idempotent: a second run with nothing to do returns in about a second (stamp = lock hash).
# Usage: scripts/setup_env.sh        (prints the venv path on its last line)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${DPT_ROS_VENV:-$root/.venv}
lock=$root/requirements.txt
stamp=$venv/.dpt_ros_lock.sha256
want=$(sha256sum "$lock" | cut -d' ' -f1)

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "$venv"
  exit 0
fi

find_python312() {
  for cand in "${PYTHON312:-}" python3.12 \
      "$(command -v pyenv >/dev/null 2>&1 && echo "$(pyenv root)/versions/3.12.1/bin/python3.12")" \
      "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$cand" ] || continue
    if PYENV_VERSION=3.12.1 "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' \
        >/dev/null 2>&1; then
      echo "$cand"; return 0
    fi
  done
  return 1
}

if ! py=$(find_python312); then
  cat >&2 <<'MSG'
error: Python 3.12 is required (ttnn 0.81.1 ships wheels only for cp310/cp312, and every
other dependency has cp312 wheels). Install it, then re-run, e.g.:
  pyenv install 3.12.1             # or: apt-get install python3.12 python3.12-venv
  PYTHON312=/path/to/python3.12 scripts/setup_env.sh
MSG
  exit 1
fi

echo "setup_env: creating $venv with $py" >&2
if [ ! -x "$venv/bin/python" ]; then
  PYENV_VERSION=3.12.1 "$py" -m venv "$venv"
fi
# colcon must not crawl the venv looking for packages.
touch "$venv/COLCON_IGNORE"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade 'pip>=24' >&2
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$lock" >&2
echo "$want" > "$stamp"
echo "setup_env: ready" >&2
echo "$venv"
