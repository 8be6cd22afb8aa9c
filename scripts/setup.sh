#!/usr/bin/env bash
# scripts/setup.sh: provision devicefit's two interpreters. Run it through `make setup`.
#
#   .venv/  CPython 3.11 with devicefit installed editable plus its test extras, every version pinned by
#           constraints.txt.
#   .lite/  a separate CPython 3.9 or 3.10 that imports paddlelite (the wheels stop at 3.10), reached through
#           ONE wrapper, .lite/bin/python. Paddle Lite also aborts its whole process on fatal errors, so it
#           must never run inside the search process anyway (STACK-NOTES: "Paddle Lite needs its own
#           interpreter"). .lite/info.json records which interpreter was chosen and how.
#
# The Lite interpreter is looked for in this order (the first that works wins):
#   env       $DEVICEFIT_LITE_BASE_PYTHON
#   existing  python3.10 / python3.9 on PATH (each one is run, so pyenv shims of inactive versions drop out),
#             pyenv versions, /usr/bin and /usr/local/bin, uv-managed and conda pythons
#   debian    Debian bullseye's python3.9 packages, fetched with a private apt state under .lite/apt and
#             unpacked with dpkg -x into .lite/python (nothing is installed system-wide)
# The paddlelite and numpy wheels go to .lite/site, installed by the main venv's pip for the Lite Python's version.
#
# Idempotent: every part keeps a stamp of its inputs; a rerun with nothing changed only checks (seconds).
#
# Environment:
#   PYTHON                   the CPython 3.11 to build .venv from (default: python3.11 found on PATH)
#   DEVICEFIT_LITE_BASE_PYTHON  a CPython 3.9/3.10 to use for Paddle Lite (route "env")
#   DEVICEFIT_LITE_ROUTE     auto (default) | env | existing | debian: force the route, e.g. for testing
#   DEVICEFIT_DEBIAN_MIRROR  Debian mirror for the debian route (default http://deb.debian.org/debian; the
#                            security suite then comes from .../debian-security beside it)
set -Eeuo pipefail

LITE_PADDLELITE=2.13rc0
LITE_NUMPY=1.26.4
VENV_RECIPE=1   # bump when the way .venv is built changes, to invalidate old stamps
LITE_RECIPE=1   # the same for .lite

ORIG_PWD=$PWD
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
shopt -s nullglob
VENV=$ROOT/.venv
LITE=$ROOT/.lite
T0=$SECONDS

log() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: warning: %s\n' "$*" >&2; }
paragraph() { printf '%s\n' "$*" | fold -s -w 110 >&2; }
die() {  # a clear one-paragraph message, then a non-zero exit
    trap - ERR
    printf '\n' >&2
    paragraph "setup: FAILED: $*"
    exit 1
}
STEP="starting"
HINT=""
on_error() {
    local rc=$1 line=$2
    trap - ERR
    printf '\n' >&2
    paragraph "setup: FAILED (exit $rc, scripts/setup.sh line $line) while $STEP. $HINT"
    exit "$rc"
}
trap 'on_error $? $LINENO' ERR

# Single-quote a string for a POSIX sh script.
sq() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
sha() { sha256sum "$1" | cut -c1-64; }

# Only one setup at a time per checkout (make -j, two terminals).
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/devicefit-setup-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12).lock"
    if ! flock -n 9; then
        log "another setup of this checkout is running; waiting for it ..."
        flock 9
    fi
fi

###############################################################################################################
# 1. The main environment: .venv with CPython 3.11
###############################################################################################################
STEP="looking for CPython 3.11"
HINT="Install CPython 3.11 or point PYTHON at one (PYTHON=/path/to/python3.11 make setup)."

# Prints "<version> <base_prefix> <executable>" for a CPython 3.11, fails otherwise.
probe_311() {
    local out
    out=$(env -u PYTHONHOME -u PYTHONPATH "$1" -c 'import os, sys
print(sys.implementation.name, "%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.base_prefix), os.path.realpath(sys.executable))' 2>/dev/null) || return 1
    case "$out" in cpython\ 3.11.*) printf '%s\n' "${out#cpython }" ;; *) return 1 ;; esac
}

BASE_PY="" BASE_VERSION="" BASE_PREFIX=""
if [ -n "${PYTHON:-}" ]; then
    base_candidates=("$PYTHON")
else
    base_candidates=(python3.11 /usr/bin/python3.11 /usr/local/bin/python3.11 python3)
fi
for cand in "${base_candidates[@]}"; do
    if out=$(probe_311 "$cand"); then
        read -r BASE_VERSION BASE_PREFIX BASE_PY <<<"$out"
        break
    fi
done
if [ -z "$BASE_PY" ]; then
    if [ -n "${PYTHON:-}" ]; then
        die "PYTHON=$PYTHON is not a working CPython 3.11 (devicefit needs exactly 3.11: paddlepaddle 2.6.2 and the rest of the stack are pinned for it). Point PYTHON at a CPython 3.11 executable, or unset it to use python3.11 from PATH."
    fi
    die "found no working CPython 3.11 (tried: ${base_candidates[*]}). devicefit needs exactly 3.11. Install it (Debian 12: apt-get install python3.11 python3.11-venv; or pyenv / uv), or point PYTHON at one: PYTHON=/path/to/python3.11 make setup."
fi

venv_stamp_want=$(printf '%s\n' \
    "recipe=$VENV_RECIPE" \
    "root=$ROOT" \
    "base=$BASE_PREFIX $BASE_VERSION" \
    "pyproject.toml=$(sha pyproject.toml)" \
    "constraints.txt=$(sha constraints.txt)")
VENV_STAMP=$VENV/.devicefit-stamp

venv_identity() {  # "<version> <base_prefix>" of the venv's python, or fails
    env -u PYTHONHOME -u PYTHONPATH "$VENV/bin/python" -c 'import os, sys
print("%d.%d.%d" % sys.version_info[:3], os.path.realpath(sys.base_prefix))' 2>/dev/null
}

if [ -f "$VENV_STAMP" ] && [ "$(cat "$VENV_STAMP")" = "$venv_stamp_want" ] \
        && [ "$(venv_identity || true)" = "$BASE_VERSION $BASE_PREFIX" ]; then
    log ".venv is up to date (stamp matches pyproject.toml, constraints.txt and Python $BASE_VERSION): skipped pip install"
else
    STEP="creating .venv"
    HINT="Check that $BASE_PY can create virtual environments; 'make clean setup' starts from scratch; PYTHON=/path/to/python3.11 picks another interpreter."
    if [ -e "$VENV" ]; then
        have=$(venv_identity || true)
        if [ "$have" = "$BASE_VERSION $BASE_PREFIX" ] && [ -x "$VENV/bin/pip" ]; then
            if [ -f "$VENV_STAMP" ]; then
                log "updating .venv (pyproject.toml or constraints.txt changed since the last setup)"
            else
                log "adopting the existing .venv (Python $BASE_VERSION, no stamp yet): installing into it"
            fi
        else
            log "recreating .venv: it is not a working venv of $BASE_PY ${have:+(it has Python $have)}"
            rm -rf "$VENV"
        fi
    fi
    if [ ! -e "$VENV" ]; then
        log "creating .venv with $BASE_PY (CPython $BASE_VERSION) ..."
        if ! "$BASE_PY" -m venv "$VENV"; then
            # Debian's python3.11 without python3.11-venv has no ensurepip: make the venv bare, then add pip.
            warn "'$BASE_PY -m venv' failed (no ensurepip?); creating .venv without pip and bootstrapping pip from PyPI"
            rm -rf "$VENV"
            STEP="creating .venv without pip and bootstrapping pip into it"
            "$BASE_PY" -m venv --without-pip "$VENV"
            "$VENV/bin/python" "$ROOT/scripts/bootstrap_pip.py"
        fi
    fi
    rm -f "$VENV_STAMP"
    STEP="installing devicefit into .venv (pip install -e \".[test,gp]\" -c constraints.txt)"
    HINT="See pip's output above. Check that PyPI is reachable and that constraints.txt still satisfies pyproject.toml (regenerate it as its header says); 'make clean setup' rebuilds .venv from scratch."
    log "installing devicefit (editable, with test extras) into .venv, pinned by constraints.txt ..."
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
        -e ".[test,gp]" -c constraints.txt
    STEP="checking .venv (pip check)"
    HINT="An installed package's declared requirements are not met: fix constraints.txt (see its header)."
    "$VENV/bin/python" -m pip check --disable-pip-version-check >/dev/null || {
        "$VENV/bin/python" -m pip check --disable-pip-version-check >&2 || true
        false
    }
    # Honesty check of constraints.txt: every installed distribution should be pinned there, at that version.
    unpinned=$("$VENV/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable | awk -F'==' '
        NR == FNR { if ($0 ~ /==/ && $0 !~ /^[[:space:]]*#/) pin[tolower($1)] = $2; next }
        /==/ { n = tolower($1); if (n == "pip" || n == "setuptools" || n == "wheel") next
               if (!(n in pin)) print $1 " (not pinned)"; else if (pin[n] != $2) print $1 "==" $2 " (pinned " pin[n] ")" }
        ' constraints.txt - | paste -sd, - | sed 's/,/, /g')
    if [ -n "$unpinned" ]; then
        warn ".venv holds packages that constraints.txt does not pin as installed: $unpinned. If devicefit pulled them in, constraints.txt is incomplete: regenerate it (see its header). If you installed them by hand, 'make clean setup' gives a pristine .venv."
    fi
    printf '%s\n' "$venv_stamp_want" >"$VENV_STAMP"
    log ".venv ready ($((SECONDS - T0))s)"
fi

###############################################################################################################
# 2. The Paddle Lite interpreter: .lite/bin/python
###############################################################################################################
T1=$SECONDS
STEP="choosing the Paddle Lite interpreter"
HINT="Point DEVICEFIT_LITE_BASE_PYTHON at a CPython 3.10 or 3.9 (x86-64) and rerun."
mkdir -p "$LITE"
ROUTE_REQ=${DEVICEFIT_LITE_ROUTE:-auto}
case "$ROUTE_REQ" in
    auto | env | existing | debian) ;;
    *) die "DEVICEFIT_LITE_ROUTE=$ROUTE_REQ is not one of auto, env, existing, debian." ;;
esac
if [ "$(uname -m)" != x86_64 ]; then
    die "paddlelite==$LITE_PADDLELITE ships wheels only for x86-64 Linux (CPython 3.7-3.10), and this machine is $(uname -m). The Lite interpreter cannot be provisioned here; run devicefit on an x86-64 Linux host."
fi

# Probe an interpreter: prints "<version> <executable>" when it is a CPython 3.9/3.10 on x86-64 whose ctypes and
# ssl import; otherwise prints a one-line reason and fails. Extra arguments are VAR=value settings for `env`.
PROBE_CODE='import sys, platform, ctypes, ssl
print(sys.implementation.name, "%d.%d.%d" % sys.version_info[:3], platform.machine(), sys.executable)'
probe_lite() {
    local py=$1 out impl ver mach exe
    shift
    if ! out=$(env -u PYTHONHOME -u PYTHONPATH "$@" timeout 60 "$py" -c "$PROBE_CODE" 2>&1); then
        printf '%s\n' "$out" | awk 'NF { print substr($0, 1, 160); exit }'

        return 1
    fi
    read -r impl ver mach exe <<<"$(printf '%s\n' "$out" | tail -n 1)"
    if [ "$impl" != cpython ]; then echo "not CPython ($impl)"; return 1; fi
    case "$ver" in 3.9.* | 3.10.*) ;; *) echo "Python $ver, not 3.9 or 3.10"; return 1 ;; esac
    if [ "$mach" != x86_64 ]; then echo "built for $mach, not x86_64"; return 1; fi
    printf '%s %s\n' "$ver" "${exe:-$py}"
}

# Candidate interpreters for the "existing" route, best first, one per line (duplicates are fine).
existing_candidates() {
    local v p base
    local -a bases=()
    for v in 3.10 3.9; do command -v "python$v" 2>/dev/null || true; done
    for v in 3.10 3.9; do  # pyenv installs, newest patch release first
        sort_rv "${PYENV_ROOT:-$HOME/.pyenv}/versions/$v"*/bin/python"$v"
    done
    for v in 3.10 3.9; do echo "/usr/bin/python$v"; echo "/usr/local/bin/python$v"; done
    if command -v uv >/dev/null 2>&1; then
        for v in 3.10 3.9; do UV_PYTHON_DOWNLOADS=never timeout 30 uv python find "$v" 2>/dev/null || true; done
    fi
    for v in 3.10 3.9; do  # uv-managed pythons, also when uv itself is not on PATH
        sort_rv "${UV_PYTHON_INSTALL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/uv/python}/cpython-$v."*/bin/python"$v"
    done
    if command -v conda >/dev/null 2>&1; then bases+=("$(timeout 30 conda info --base 2>/dev/null || true)"); fi
    if [ -n "${CONDA_EXE:-}" ]; then bases+=("$(dirname "$(dirname "$CONDA_EXE")")"); fi
    bases+=("$HOME/miniconda3" "$HOME/anaconda3" "$HOME/miniforge3" "$HOME/mambaforge" /opt/conda)
    for base in "${bases[@]}"; do
        if [ -z "$base" ]; then continue; fi
        for v in 3.10 3.9; do
            for p in "$base/bin/python$v" "$base"/envs/*/bin/python"$v"; do echo "$p"; done
        done
    done
}
sort_rv() { if [ "$#" != 0 ]; then printf '%s\n' "$@" | sort -rV; fi; }

# Debian route: make .lite/python hold bullseye's python3.9 (unpacked, never installed). Sets DEB_PY DEB_ENV.
DEB_PREFIX=$LITE/python
DEB_LIBPATH="$DEB_PREFIX/usr/lib/x86_64-linux-gnu:$DEB_PREFIX/lib/x86_64-linux-gnu"
DEB_PY=$DEB_PREFIX/usr/bin/python3.9
DEB_ENV=("LD_LIBRARY_PATH=$DEB_LIBPATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "PYTHONHOME=$DEB_PREFIX/usr")
DEB_BASE_PACKAGES=(python3.9-minimal libpython3.9-minimal libpython3.9-stdlib python3.9 libssl1.1 libffi7)
APT_DIR=$LITE/apt
APT_EXTRA=()
APT_LOG=$APT_DIR/apt.log

# The bullseye package that ships a shared library the unpacked python3.9 may miss on a Debian 12 system.
soname_package() {
    case "$1" in
        libssl.so.1.1 | libcrypto.so.1.1) echo libssl1.1 ;;
        libffi.so.7) echo libffi7 ;;
        libmpdec.so.3) echo libmpdec3 ;;
        libexpat.so.1) echo libexpat1 ;;
        libsqlite3.so.0) echo libsqlite3-0 ;;
        libbz2.so.1.0) echo libbz2-1.0 ;;
        liblzma.so.5) echo liblzma5 ;;
        libz.so.1) echo zlib1g ;;
        libdb-5.3.so) echo libdb5.3 ;;
        libncursesw.so.6) echo libncursesw6 ;;
        libtinfo.so.6) echo libtinfo6 ;;
        libreadline.so.8) echo libreadline8 ;;
        libnsl.so.2) echo libnsl2 ;;
        libtirpc.so.3) echo libtirpc3 ;;
        libgssapi_krb5.so.2) echo libgssapi-krb5-2 ;;
        libkrb5.so.3) echo libkrb5-3 ;;
        libk5crypto.so.3) echo libk5crypto3 ;;
        libkrb5support.so.0) echo libkrb5support0 ;;
        libcom_err.so.2) echo libcom-err2 ;;
        libkeyutils.so.1) echo libkeyutils1 ;;
        libuuid.so.1) echo libuuid1 ;;
        libcrypt.so.1) echo libcrypt1 ;;
        *) return 1 ;;
    esac
}

# Shared libraries that the interpreter, its stdlib extensions or the unpacked libraries cannot find.
missing_sonames() {
    local prefix=$1 f
    { find "$prefix/usr/bin/python3.9" "$prefix/usr/lib/python3.9/lib-dynload" "$prefix/usr/lib/x86_64-linux-gnu" \
        "$prefix/lib/x86_64-linux-gnu" -type f \( -name 'python3.9' -o -name '*.so' -o -name '*.so.*' \) 2>/dev/null ||
        true; } |
        while read -r f; do
            LD_LIBRARY_PATH="$prefix/usr/lib/x86_64-linux-gnu:$prefix/lib/x86_64-linux-gnu" ldd "$f" 2>/dev/null |
                awk '/=> not found/ { print $1 }' || true
        done | sort -u
}

apt_get() {  # apt-get with a private sources list and state; output goes to .lite/apt/apt.log
    local rc=0
    {
        printf '\n$ apt-get %s\n' "$*"
        apt-get -q -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
            -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" \
            -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts=/dev/null \
            -o APT::Sandbox::User="$(id -un)" -o Debug::NoLocking=true "${APT_EXTRA[@]}" "$@"
    } >>"$APT_LOG" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        printf 'setup: apt-get %s failed; the end of %s:\n' "$1" "$APT_LOG" >&2
        tail -n 12 "$APT_LOG" | sed 's/^/    /' >&2
    fi
    return "$rc"
}

provision_debian_python() {
    local debs stamp_file=$DEB_PREFIX/.devicefit-debs reason new pkgs s p unmapped
    if [ -x "$DEB_PY" ] && [ -f "$stamp_file" ] && reason=$(probe_lite "$DEB_PY" "${DEB_ENV[@]}"); then
        log "Debian python3.9 already unpacked in .lite/python ($(paste -sd' ' "$stamp_file" | cut -c1-120)...): skipped apt"
        return 0
    fi
    STEP="fetching Debian bullseye's python3.9 into .lite/python (debian route)"
    HINT="This route needs apt-get and dpkg (Debian or Ubuntu) and the Debian mirror (log: .lite/apt/apt.log). Instead you can install CPython 3.10 or 3.9 (pyenv install 3.10; uv python install 3.10; apt-get install python3.10 on Ubuntu 22.04) and rerun, or point DEVICEFIT_LITE_BASE_PYTHON at one."
    for tool in apt-get dpkg ldd; do
        command -v "$tool" >/dev/null 2>&1 || die "the debian route needs $tool, which this machine lacks. $HINT"
    done
    rm -rf "$APT_DIR"
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/debs"
    : >"$APT_LOG"
    # Try the given (or default) mirror; when bullseye has left it, try Debian's archive.
    local mirror=${DEVICEFIT_DEBIAN_MIRROR:-http://deb.debian.org/debian} ok=""
    local -a tries=("$mirror|${mirror%/debian}/debian-security|")
    if [ -z "${DEVICEFIT_DEBIAN_MIRROR:-}" ]; then
        tries+=("http://archive.debian.org/debian|http://archive.debian.org/debian-security|archive")
    fi
    for t in "${tries[@]}"; do
        IFS='|' read -r m sec kind <<<"$t"
        APT_EXTRA=()
        if [ "$kind" = archive ]; then APT_EXTRA=(-o Acquire::Check-Valid-Until=false); fi
        printf 'deb %s bullseye main\ndeb %s bullseye-security main\n' "$m" "$sec" >"$APT_DIR/sources.list"
        log "debian route: apt-get update of bullseye from $m (private state in .lite/apt) ..."
        # apt-get update exits 0 when a source cannot be reached: check that bullseye's package list arrived.
        if apt_get update && compgen -G "$APT_DIR/lists/*_dists_bullseye_main_binary-amd64_Packages*" >/dev/null; then
            if ! compgen -G "$APT_DIR/lists/*_dists_bullseye-security_main_binary-amd64_Packages*" >/dev/null; then
                warn "debian route: bullseye-security from $sec was not reachable; using bullseye's release packages"
            fi
            ok=1
            break
        fi
        printf 'setup: debian route: no bullseye package list from %s; the end of %s:\n' "$m" "$APT_LOG" >&2
        tail -n 4 "$APT_LOG" | sed 's/^/    /' >&2
        rm -rf "$APT_DIR/lists"
        mkdir -p "$APT_DIR/lists/partial"
    done
    [ -n "$ok" ] || die "apt-get update of Debian bullseye failed (see the lines above and .lite/apt/apt.log). $HINT"

    new=$DEB_PREFIX.new
    rm -rf "$new"
    mkdir -p "$new"
    pkgs=("${DEB_BASE_PACKAGES[@]}")
    local -A fetched=()
    for _ in 1 2 3 4 5; do  # each round fetches what the previous one found missing
        log "debian route: apt-get download ${pkgs[*]}"
        (cd "$APT_DIR/debs" && apt_get download "${pkgs[@]}") ||
            die "apt-get download of ${pkgs[*]} from bullseye failed (see above). $HINT"
        for p in "${pkgs[@]}"; do fetched[$p]=1; done
        for debs in "$APT_DIR"/debs/*.deb; do dpkg -x "$debs" "$new"; done
        pkgs=()
        unmapped=()
        for s in $(missing_sonames "$new"); do
            if p=$(soname_package "$s"); then
                if [ -z "${fetched[$p]:-}" ]; then pkgs+=("$p"); fetched[$p]=1; fi
            else
                unmapped+=("$s")
            fi
        done
        if [ "${#pkgs[@]}" = 0 ]; then break; fi
    done
    if [ "${#unmapped[@]}" != 0 ]; then
        warn "debian route: some shared libraries stay missing (${unmapped[*]}); the stdlib modules needing them will not import in the Lite interpreter"
    fi
    rm -rf "$DEB_PREFIX"
    mv "$new" "$DEB_PREFIX"
    if ! reason=$(probe_lite "$DEB_PY" "${DEB_ENV[@]}"); then
        die "the unpacked Debian python3.9 does not run: $reason. $HINT"
    fi
    for debs in "$APT_DIR"/debs/*.deb; do basename "$debs"; done | sort >"$stamp_file"
}

# Install the wheels for Python <major.minor> into .lite/site, unless already there.
provision_site() {
    local pyver=$1 site=$LITE/site want
    want="python=$pyver paddlelite==$LITE_PADDLELITE numpy==$LITE_NUMPY"
    if [ -f "$site/.devicefit-stamp" ] && [ "$(cat "$site/.devicefit-stamp")" = "$want" ]; then
        log "wheels for Python $pyver already in .lite/site: skipped pip"
        return 0
    fi
    STEP="installing paddlelite==$LITE_PADDLELITE and numpy==$LITE_NUMPY for Python $pyver into .lite/site"
    HINT="See pip's output above; check that PyPI is reachable (pip download paddlelite==$LITE_PADDLELITE --no-deps --python-version $pyver --only-binary=:all: -d /tmp/x)."
    log "installing paddlelite==$LITE_PADDLELITE numpy==$LITE_NUMPY (cp${pyver/./} wheels) into .lite/site ..."
    rm -rf "$site.new" || return 1
    "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off --no-deps \
        --only-binary=:all: --implementation cp --python-version "$pyver" \
        --platform manylinux1_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform linux_x86_64 --target "$site.new" "paddlelite==$LITE_PADDLELITE" "numpy==$LITE_NUMPY" || return 1
    printf '%s\n' "$want" >"$site.new/.devicefit-stamp" && rm -rf "$site" && mv "$site.new" "$site"
}

write_wrapper() {  # route interpreter
    local route=$1 py=$2 tmp=$LITE/bin/python.new
    mkdir -p "$LITE/bin"
    {
        echo '#!/bin/sh'
        echo "# devicefit's Paddle Lite interpreter (route: $route). Generated by scripts/setup.sh: edit that, not this."
        echo "# Runs CPython $3 with the paddlelite and numpy wheels of .lite/site and nothing else on its path."
        if [ "$route" = debian ]; then
            echo "PYTHONHOME=$(sq "$DEB_PREFIX/usr")"
            echo "LD_LIBRARY_PATH=$(sq "$DEB_LIBPATH")\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
            echo "export PYTHONHOME LD_LIBRARY_PATH"
        else
            echo "unset PYTHONHOME"
        fi
        echo "PYTHONPATH=$(sq "$LITE/site")"
        echo "PYTHONNOUSERSITE=1"
        echo "export PYTHONPATH PYTHONNOUSERSITE"
        echo "exec $(sq "$py") \"\$@\""
    } >"$tmp" && chmod 755 "$tmp" && mv "$tmp" "$LITE/bin/python"
}

# Runs the wrapper and prints info.json's content; fails unless paddlelite and numpy import at the pinned versions.
VERIFY_CODE='import importlib.metadata as md, json, platform, sys
import numpy, paddlelite.lite as lite
assert hasattr(lite, "Opt") and hasattr(lite, "MobileConfig"), "paddlelite.lite lacks Opt/MobileConfig"
route, interpreter, wrapper, want_lite, want_numpy = sys.argv[1:]
info = {"interpreter": interpreter, "version": platform.python_version(), "route": route,
        "paddlelite": md.version("paddlelite"), "numpy": numpy.__version__, "wrapper": wrapper,
        "executable": sys.executable}
assert info["paddlelite"] == want_lite, "paddlelite %s, want %s" % (info["paddlelite"], want_lite)
assert info["numpy"] == want_numpy, "numpy %s, want %s" % (info["numpy"], want_numpy)
print(json.dumps(info, indent=2))'
verify_lite() {  # route interpreter
    "$LITE/bin/python" -c "$VERIFY_CODE" "$1" "$2" "$LITE/bin/python" "$LITE_PADDLELITE" "$LITE_NUMPY"
}

# Make .lite/bin/python run <interpreter> (version <ver>) for <route>; fails (with a message) if it cannot.
provision_lite() {
    local route=$1 py=$2 ver=$3 extra="" want info
    if [ "$route" = debian ]; then extra="debs=$(sha "$DEB_PREFIX/.devicefit-debs")"; fi
    want=$(printf '%s\n' "recipe=$LITE_RECIPE" "root=$ROOT" "route=$route" "interpreter=$py" "version=$ver" \
        "paddlelite=$LITE_PADDLELITE" "numpy=$LITE_NUMPY" "$extra")
    if [ -f "$LITE/stamp" ] && [ "$(cat "$LITE/stamp")" = "$want" ] && [ -x "$LITE/bin/python" ] \
            && [ -f "$LITE/info.json" ] && verify_lite "$route" "$py" >/dev/null 2>&1; then
        log ".lite is up to date (stamp matches; paddlelite imports): skipped wheel install"
        return 0
    fi
    rm -f "$LITE/stamp"
    provision_site "${ver%.*}" || return 1
    write_wrapper "$route" "$py" "$ver" || return 1
    STEP="checking that .lite/bin/python imports paddlelite"
    if ! info=$(verify_lite "$route" "$py" 2>"$LITE/verify.err"); then
        warn "$py: .lite/bin/python cannot import paddlelite: $(grep -v '^[[:space:]]*$' "$LITE/verify.err" | tail -n 1)"
        return 1
    fi
    rm -f "$LITE/verify.err"
    printf '%s\n' "$info" >"$LITE/info.json"
    printf '%s\n' "$want" >"$LITE/stamp"
}

done_lite() {
    log "Paddle Lite interpreter ready: .lite/bin/python -> $1 ($2, CPython $3) ($((SECONDS - T1))s)"
    log "done in $((SECONDS - T0))s"
    exit 0
}

# Route "env".
if [ "$ROUTE_REQ" = env ] && [ -z "${DEVICEFIT_LITE_BASE_PYTHON:-}" ]; then
    die "DEVICEFIT_LITE_ROUTE=env needs DEVICEFIT_LITE_BASE_PYTHON=/path/to/python3.10 (or 3.9)."
fi
if [ -n "${DEVICEFIT_LITE_BASE_PYTHON:-}" ] && { [ "$ROUTE_REQ" = debian ] || [ "$ROUTE_REQ" = existing ]; }; then
    log "DEVICEFIT_LITE_ROUTE=$ROUTE_REQ: ignoring DEVICEFIT_LITE_BASE_PYTHON=$DEVICEFIT_LITE_BASE_PYTHON"
elif [ -n "${DEVICEFIT_LITE_BASE_PYTHON:-}" ]; then
    py=$DEVICEFIT_LITE_BASE_PYTHON
    case "$py" in
        /*) ;;
        */*) py=$ORIG_PWD/$py ;;
        *) py=$(command -v "$py" || echo "$py") ;;
    esac
    out=$(probe_lite "$py") ||
        die "DEVICEFIT_LITE_BASE_PYTHON=$DEVICEFIT_LITE_BASE_PYTHON is not usable for Paddle Lite: $out. It must be a CPython 3.10 or 3.9 on x86-64 whose ctypes and ssl import. Fix or unset it (unset, setup looks for one itself and falls back to Debian's python3.9)."
    read -r ver _ <<<"$out"
    log "Paddle Lite interpreter: using $py (env, CPython $ver)"
    provision_lite env "$py" "$ver" ||
        die "DEVICEFIT_LITE_BASE_PYTHON=$py runs, but paddlelite==$LITE_PADDLELITE does not import in it (see the warning above). Point DEVICEFIT_LITE_BASE_PYTHON at another CPython 3.10/3.9, or unset it."
    done_lite "$py" env "$ver"
fi

# Route "existing".
if [ "$ROUTE_REQ" = auto ] || [ "$ROUTE_REQ" = existing ]; then
    declare -A tried=()
    while read -r cand <&3; do  # fd 3: nothing run in the loop can eat the candidate list from stdin
        if [ -z "$cand" ] || [ -n "${tried[$cand]:-}" ]; then continue; fi
        tried[$cand]=1
        if [ ! -e "$cand" ]; then continue; fi
        if ! out=$(probe_lite "$cand"); then
            log "Paddle Lite interpreter: skipping $cand (${out:-does not run})"
            continue
        fi
        read -r ver exe <<<"$out"
        exe=$(realpath "$exe" 2>/dev/null || echo "$exe")
        if [ "$exe" != "$cand" ] && [ -n "${tried[$exe]:-}" ]; then continue; fi
        tried[$exe]=1
        log "Paddle Lite interpreter: using $exe (existing, CPython $ver)"
        if provision_lite existing "$exe" "$ver"; then
            done_lite "$exe" existing "$ver"
        fi
        warn "$exe did not work out; trying the next candidate"
    done 3< <(existing_candidates)
    if [ "$ROUTE_REQ" = existing ]; then
        die "DEVICEFIT_LITE_ROUTE=existing, but no existing CPython 3.10/3.9 (x86-64, with ctypes and ssl) works on this machine (looked on PATH, in pyenv, /usr/bin, /usr/local/bin, uv and conda). Install one, point DEVICEFIT_LITE_BASE_PYTHON at one, or unset DEVICEFIT_LITE_ROUTE to fall back to Debian's python3.9."
    fi
    log "Paddle Lite interpreter: no usable CPython 3.10/3.9 found on this machine; using the debian route"
fi

# Route "debian".
if [ "$ROUTE_REQ" = debian ]; then log "DEVICEFIT_LITE_ROUTE=debian: not looking for existing interpreters"; fi
provision_debian_python
out=$(probe_lite "$DEB_PY" "${DEB_ENV[@]}")
read -r ver _ <<<"$out"
log "Paddle Lite interpreter: using $DEB_PY (debian, CPython $ver)"
provision_lite debian "$DEB_PY" "$ver" ||
    die "Debian's python3.9 in .lite/python runs, but paddlelite==$LITE_PADDLELITE does not import in it (see the warning above). Point DEVICEFIT_LITE_BASE_PYTHON at a CPython 3.10/3.9, or 'rm -rf .lite' and rerun."
done_lite "$DEB_PY" debian "$ver"
