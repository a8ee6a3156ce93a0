# Sourced by scripts/demo, scripts/test, scripts/install and scripts/update-deps: make a venv (.venv, or
# $UV_PROJECT_ENVIRONMENT) with Python 3.11 or 3.12 and install into it from uv.lock, never resolving anew.
# Usage: ensure_venv UV-SYNC-ARGS…   e.g. ensure_venv --extra local --group tools
# uv itself comes first, at the version and hashes uv.lock pins (scripts/bootstrap-uv); `uv sync --frozen`
# then installs exactly the locked versions and is a quick no-op when .venv already has them. Installed
# packages are compiled to bytecode once, so no command pays for compiling them (even where the
# environment sets PYTHONDONTWRITEBYTECODE).
ensure_venv() {
  local python="" venv="${UV_PROJECT_ENVIRONMENT:-.venv}"
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info < (3, 13))' 2>/dev/null; then
      python="$candidate"; break
    fi
  done
  if [ -z "$python" ]; then
    echo "Error: deployctl needs Python 3.11 or 3.12 on PATH" >&2
    echo "Hint: install python3.11 (e.g. apt-get install python3.11 python3.11-venv)" >&2
    exit 5
  fi
  if [ ! -x "$venv/bin/python" ]; then
    echo "Creating $venv with $python …" >&2
    "$python" -m venv "$venv"
  fi
  if ! { "$python" scripts/bootstrap-uv "$venv" &&
         UV_PROJECT_ENVIRONMENT="$venv" UV_PYTHON_DOWNLOADS=never \
           "$venv/bin/uv" sync --quiet --frozen --compile-bytecode --python "$venv/bin/python" "$@"; } > "$venv/install.log" 2>&1; then
    cat "$venv/install.log" >&2
    echo "Error: installing from uv.lock failed (log above, also in $venv/install.log)" >&2
    echo "Hint: check your access to PyPI; scripts/update-deps refreshes the lock after pyproject.toml changes" >&2
    exit 1
  fi
}
