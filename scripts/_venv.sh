# Shared by scripts/test, scripts/demo and scripts/bench: make sure .venv (or $BRS_VENV)
# exists, runs the same Python as `python3`, and holds this checkout installed with the
# given extra. Quiet when there is nothing to do; self-healing when something changed:
#   - a venv made by another Python X.Y (or whose interpreter is gone) is recreated;
#   - `pip install -e .[EXTRA]` runs only when its stamp is missing or stale. The stamp
#     ($VENV/.brs-stamp-EXTRA) is keyed on pyproject.toml's hash, the extra, the exact
#     Python version and this checkout's path, so a dependency change reinstalls and an
#     edit to the code does not need to (the install is editable).
VENV="${BRS_VENV:-$PWD/.venv}"

_brs_python_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null
}

_brs_stamp_key() {
    local extra="$1" version="$2" digest
    digest="$(python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' pyproject.toml)"
    printf '%s extra=%s python=%s dir=%s\n' "$digest" "$extra" "$version" "$PWD"
}

ensure_venv() {
    local extra="$1" want have stamp key
    want="$(_brs_python_version python3)"
    if [ -z "$want" ]; then
        echo "== python3 not found: brs_autopatch needs Python >= 3.11" >&2
        return 1
    fi
    if [ -e "$VENV" ]; then
        have="$(_brs_python_version "$VENV/bin/python" || true)"
        if [ "${have%.*}" != "${want%.*}" ]; then
            if [ ! -f "$VENV/pyvenv.cfg" ]; then
                echo "== $VENV exists but is not a venv: remove it or set BRS_VENV" >&2
                return 1
            fi
            echo "== $VENV runs Python ${have:-(none, broken)}, python3 is $want: recreating it"
            python3 -m venv --clear "$VENV"
            "$VENV/bin/python" -m pip install -q --upgrade pip
        fi
    else
        echo "== creating $VENV"
        python3 -m venv "$VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
    fi
    stamp="$VENV/.brs-stamp-$extra"
    key="$(_brs_stamp_key "$extra" "$want")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
        return 0  # installed from this very pyproject.toml: nothing to do
    fi
    echo "== installing brs_autopatch[$extra] into $VENV"
    # Editable: a .pth naming this directory (see package-dir in pyproject.toml).
    "$VENV/bin/python" -m pip install -q -e ".[$extra]"
    printf '%s' "$key" > "$stamp"
}
