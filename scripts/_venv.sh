# Sourced by scripts/demo and scripts/test: make .venv (Python >= 3.11) with deployctl installed.
# Usage: ensure_venv EXTRAS   (EXTRAS: "" for the runtime only, "dev" for everything the tests need)
# Reinstalls only when pyproject.toml changed since the last install with the same extras.
ensure_venv() {
  local extras="$1" python="" stamp spec
  for candidate in python3.11 python3.12 python3.13 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "Error: deployctl needs Python 3.11 or newer on PATH" >&2
    echo "Hint: install python3.11 (e.g. apt-get install python3.11 python3.11-venv)" >&2
    exit 5
  fi
  if [ ! -x .venv/bin/python ]; then
    echo "Creating .venv with $python …" >&2
    "$python" -m venv .venv
  fi
  spec="."; [ -n "$extras" ] && spec=".[$extras]"
  stamp=".venv/.deployctl-install-${extras:-runtime}-$(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "Installing deployctl${extras:+ with $extras extras} into .venv …" >&2
    if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec"; } > .venv/pip.log 2>&1; then
      cat .venv/pip.log >&2
      echo "Error: installing deployctl failed (full log above, also in .venv/pip.log)" >&2
      exit 1
    fi
    rm -f .venv/.deployctl-install-"${extras:-runtime}"-*
    touch "$stamp"
  fi
}
