# Shared by scripts/test, scripts/demo, scripts/bench, scripts/test-matrix,
# scripts/test-engines and scripts/lock.
#
# brs_make_venv PYTHON DIR: `PYTHON -m venv DIR`, also where the distro's Python cannot
# make one (Debian/Ubuntu without python3-venv: "ensurepip is not available"): as root
# with apt-get it installs python3.X-venv (unless BRS_TEST_NO_APT is set), otherwise it
# stops with one line naming it.
#
# ensure_venv LOCK: make sure .venv (or $BRS_VENV) exists, runs the same Python as
# `python3`, and holds exactly locks/LOCK.txt (pinned, hashes checked, no resolver) and
# this checkout, editable. Quiet when there is nothing to do; self-healing when something
# changed:
#   - a venv made by another Python X.Y (or whose interpreter is gone) is recreated;
#   - the install runs only when its stamp is missing or stale. The stamp
#     ($VENV/.brs-stamp-LOCK) is keyed on the lock's and pyproject.toml's hashes, the
#     exact Python version and this checkout's path, so a dependency change reinstalls
#     and an edit to the code does not need to (the install is editable).
VENV="${BRS_VENV:-$PWD/.venv}"

_brs_python_version() {
    "$1" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null
}

_brs_sha256() {
    sha256sum "$@" | cut -d' ' -f1 | sha256sum | cut -c1-64
}

# The Debian/Ubuntu package that gives PYTHON its venv module, or nothing when PYTHON is
# not the distro's (then apt cannot help).
_brs_venv_package() {
    "$1" - <<'EOF' 2>/dev/null
import sys
if sys.prefix == sys.base_prefix == "/usr" and sys.executable.startswith("/usr/bin/"):
    print("python%d.%d-venv" % sys.version_info[:2])
EOF
}

brs_make_venv() {  # PYTHON DIR [venv options...]
    local python="$1" dir="$2" package log
    shift 2
    log="$(mktemp)"
    if "$python" -m venv "$@" "$dir" >"$log" 2>&1; then
        rm -f "$log"; return 0
    fi
    # A failed `venv` leaves DIR half made (no pip): remove it before any retry.
    rm -rf "$dir"
    if ! grep -q "ensurepip" "$log"; then
        cat "$log" >&2; rm -f "$log"
        echo "== $python -m venv $dir failed" >&2
        return 1
    fi
    rm -f "$log"
    package="$(_brs_venv_package "$python")"
    if [ -z "$package" ]; then
        echo "== $python cannot make a venv (no ensurepip): use a Python that can (python.org, pyenv, a distro's python3 with its venv package)" >&2
        return 1
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1 || [ -n "${BRS_TEST_NO_APT:-}" ]; then
        echo "== $python cannot make a venv: install the $package package (apt-get install $package), then run this again" >&2
        return 1
    fi
    echo "== apt-get install $package ($python -m venv needs it)"
    # apt's lists may be absent (a fresh root) or old: update first.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null; }; then
        echo "== apt-get install $package failed: install it, then run this again" >&2
        return 1
    fi
    "$python" -m venv "$@" "$dir"
}

# Install a lock file into the venv of PYTHON exactly: hashes checked, no resolver
# (--no-deps: the lock is the whole closure), then remove what neither it nor the KEEP
# locks name (left over from an older lock), then `pip check`. Quiet unless pip fails.
# --no-compile is passed on to pip (scripts/test-engines: ray's thousands of modules).
# The test venvs compile at install: left to the first import, moto's and botocore's
# compiling made the suite's STS server miss its 30 s start-up on a loaded machine.
brs_install_lock() {  # [--no-compile] VENV_PYTHON LOCK_FILE [KEEP_LOCK_FILE...]
    local compile=()
    if [ "$1" = "--no-compile" ]; then compile=(--no-compile); shift; fi
    local python="$1" lock="$2" log
    shift 2
    log="$(mktemp)"
    if ! "$python" -m pip install -q --require-hashes --no-deps "${compile[@]}" -r "$lock" >"$log" 2>&1; then
        # pip prints a warning per extra index that lacks a project: not the failure.
        grep -v "^WARNING: Location" "$log" >&2 || true
        rm -f "$log"
        echo "== pip install -r $lock failed" >&2
        return 1
    fi
    rm -f "$log"
    local extra
    extra="$("$python" - "$lock" "$@" <<'EOF'
import re, sys
from importlib.metadata import distributions
def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
keep = {"pip", "brs-autopatch"}
for path in sys.argv[1:]:
    with open(path) as f:
        keep |= {norm(m[1]) for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", f.read(), re.M)}
print(" ".join(sorted({norm(d.metadata["Name"]) for d in distributions()} - keep)))
EOF
)"
    if [ -n "$extra" ]; then
        # shellcheck disable=SC2086  # a word list
        "$python" -m pip uninstall -q -y $extra || return 1
    fi
    if ! "$python" -m pip check >/dev/null 2>&1; then
        "$python" -m pip check >&2 || true
        echo "== $lock does not hold a consistent set of packages (pip check): run scripts/lock" >&2
        return 1
    fi
}

# This checkout, with no dependencies (the lock has them) and no build isolation (the
# lock has setuptools): nothing is fetched.
brs_install_self() {  # VENV_PYTHON [pip options...]
    local python="$1"
    shift
    "$python" -m pip install -q --no-deps --no-build-isolation "$@" -e .
}

_brs_stamp_key() {
    local lock="$1" version="$2"
    printf '%s lock=%s python=%s dir=%s\n' \
        "$(_brs_sha256 "locks/$lock.txt" pyproject.toml)" "$lock" "$version" "$PWD"
}

ensure_venv() {
    local lock="$1" want have stamp key
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
            brs_make_venv python3 "$VENV" --clear || return 1
        fi
    else
        echo "== creating $VENV"
        brs_make_venv python3 "$VENV" || return 1
    fi
    stamp="$VENV/.brs-stamp-$lock"
    key="$(_brs_stamp_key "$lock" "$want")"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
        return 0  # installed from this very lock and pyproject.toml: nothing to do
    fi
    # Other locks installed here and still current (the demo's next to the test's: the
    # demo lock is resolved within the test lock's versions) keep their packages.
    local keep=() other
    for other in "$VENV"/.brs-stamp-*; do
        [ -f "$other" ] || continue
        other="${other##*/.brs-stamp-}"
        if [ "$other" != "$lock" ] && [ -f "locks/$other.txt" ] \
            && [ "$(cat "$VENV/.brs-stamp-$other")" = "$(_brs_stamp_key "$other" "$want")" ]; then
            keep+=("locks/$other.txt")
        else
            rm -f "$VENV/.brs-stamp-$other"
        fi
    done
    echo "== installing locks/$lock.txt and brs_autopatch into $VENV"
    # (Explicit returns here and above: callers may run this where `set -e` does not apply.)
    brs_install_lock "$VENV/bin/python" "locks/$lock.txt" "${keep[@]}" || return 1
    # Editable: a .pth naming this directory (see package-dir in pyproject.toml).
    brs_install_self "$VENV/bin/python" || return 1
    printf '%s' "$key" > "$stamp"
}
