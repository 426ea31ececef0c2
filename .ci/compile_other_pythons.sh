#!/usr/bin/env bash
# Byte-compiles the package, the tests and the benchmarks with the real Python 3.10 and 3.12 interpreters (the
# classifiers name them; the suite runs on 3.11 only): syntax, nothing more. An interpreter is taken from PATH
# or from pyenv's versions; a missing one fails the check. Nothing is written (compile() in memory).
set -euo pipefail
cd "$(dirname "$0")/.."
for version in 3.10 3.12; do
    python=$(command -v "python$version" 2>/dev/null || true)
    if [[ -z "$python" ]] || ! "$python" -c "" 2>/dev/null; then  # a pyenv shim without the version fails
        python=$(ls -d "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/"$version".*/bin/python"$version" 2>/dev/null | tail -1)
    fi
    [[ -x "$python" ]] || { echo "no Python $version interpreter found" >&2; exit 1; }
    "$python" - ignite_speed tests benchmarks <<'PY'
import pathlib, sys
files = [p for d in sys.argv[1:] for p in sorted(pathlib.Path(d).rglob("*.py"))]
for path in files:
    compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
print(f"Python {sys.version.split()[0]}: {len(files)} files compile")
PY
done
