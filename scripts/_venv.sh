# Shared by scripts/test, scripts/demo and scripts/bench: create .venv (or $BRS_VENV)
# with python3 and install this package with the given extra.
VENV="${BRS_VENV:-$PWD/.venv}"
ensure_venv() {
    local extra="$1"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "== creating $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    echo "== installing brs_autopatch[$extra] into $VENV"
    "$VENV/bin/python" -m pip install -q -e ".[$extra]"
}
