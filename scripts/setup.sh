#!/usr/bin/env bash
# Create or update the project's two Python environments; idempotent.
#
#   .venv          the user environment: this package, editable, with [dev]
#   sim_ioc/.venv  the IOC environment: the real PandABlocks-ioc, which pins
#                  numpy<2 and pvi~=0.10 and so cannot share the user's
#
# Each venv holds a stamp (a hash of its requirement files and its Python), so
# a second run that finds nothing changed takes well under a second. As root
# with apt-get, it also makes sure Debian's postgresql (the storage tests use
# its binaries), redis-server and nats-server (the facility layout's tests)
# are installed.
#
# PYTHON=/path/to/python3.11 picks the interpreter for new venvs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

note() { printf 'setup: %s\n' "$*" >&2; }

# The interpreter for new venvs: 3.11 or 3.12 first (numpy 1.26, the IOC's,
# has wheels for both), then whatever python3 is if it is new enough.
find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    note "no Python >= 3.11 found (set PYTHON=/path/to/python3.11)"
    return 1
}

# What a venv's stamp records: the requirement file, the pip arguments and
# the venv's Python, so a change to any of them reinstalls.
stamp_of() {
    local venv=$1 file=$2
    shift 2
    {
        cat "$file"
        printf '%s\n' "$*"
        "$venv/bin/python" -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

# ensure_venv DIR REQUIREMENT_FILE PIP_INSTALL_ARGS...
# Creates DIR if it is missing or broken, then runs `pip install ARGS` unless
# the stamp says REQUIREMENT_FILE was already installed there.
ensure_venv() {
    local venv=$1 file=$2
    shift 2
    local stamp="$venv/.setup-stamp" python
    if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null; }; then
        python=$(find_python)
        note "creating $venv with $python"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    elif [ "$(cat "$stamp" 2>/dev/null)" = "$(stamp_of "$venv" "$file" "$@")" ]; then
        return 0
    fi
    note "installing into $venv: pip install $* (a few minutes the first time)"
    rm -f "$stamp"
    # pip's output minus the warnings about find-links folders a machine's
    # pip.conf may name but not have (noise, not a failure).
    {
        "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$@" 2>&1 1>&3 |
            { grep -v "^WARNING: Location 'file:" || true; } >&2
    } 3>&1
    stamp_of "$venv" "$file" "$@" >"$stamp"
}

# ensure_debian_tool COMMAND PACKAGE WHAT: as root with apt-get, install
# Debian's PACKAGE unless COMMAND is on PATH; otherwise say what will skip.
ensure_debian_tool() {
    local command=$1 package=$2 what=$3
    if command -v "$command" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        note "$command not found (install Debian's $package); $what will skip"
        return 0
    fi
    note "installing Debian's $package ($what use it)"
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >/dev/null
    }; then
        note "could not install $package; $what will skip"
    fi
}

ensure_postgres() {
    # Debian keeps the server binaries off PATH, under /usr/lib/postgresql.
    if command -v pg_ctl >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null; then
        return 0
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        note "PostgreSQL binaries not found (install Debian's postgresql); the storage tests that need them will skip"
        return 0
    fi
    note "installing Debian's postgresql (the storage tests use its binaries)"
    if ! {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    }; then
        note "could not install postgresql; the storage tests that need it will skip"
    fi
}

# Two setups at once (e.g. `./run test` in two terminals) would race in pip.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/panda-flyscan-setup-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12).lock"
    flock 9
fi

ensure_venv .venv pyproject.toml -e '.[dev]'
ensure_venv sim_ioc/.venv sim_ioc/ioc-requirements.txt -r sim_ioc/ioc-requirements.txt
ensure_venv tests/fastcs/.venv tests/fastcs/requirements.txt -r tests/fastcs/requirements.txt
ensure_postgres
# The facility layout (docs/deployment.md): the queue server's and Tiled
# cluster's Redis, the document bus's NATS server (JetStream).
ensure_debian_tool redis-server redis-server "the queue server and Tiled cluster tests"
ensure_debian_tool nats-server nats-server "the document bus tests"
