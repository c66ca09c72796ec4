#!/usr/bin/env bash
# Run nox from a pinned, hash-checked install, creating it on first use: the only thing a fresh
# machine needs is python3 (3.11) with venv. Usage: bash ci/nox.sh -s main   (any nox arguments)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.cache/nox-venv
lock=ci/nox-requirements.txt
stamp="$venv/.lock-sha256"
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ ! -x "$venv/bin/nox" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> installing nox from $lock into $venv" >&2
    if ! python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
        echo "error: python3 must be Python 3.11 (the image's Python); found $(python3 --version 2>&1)." >&2
        exit 1
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --require-hashes --no-deps -r "$lock"
    echo "$want" > "$stamp"
fi
exec "$venv/bin/nox" "$@"
