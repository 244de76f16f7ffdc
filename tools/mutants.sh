#!/usr/bin/env bash
# Issue 14's hand-made mutants, each applied to a scratch worktree of HEAD: the tests
# named with it must fail ("killed"). A "SURVIVED" line is a blind spot of the suite.
# Usage: tools/mutants.sh   (after `python3.11 dev.py test --version` made .venv)
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
TREE=$(mktemp -d)/tree
git -C "$ROOT" worktree add -q --detach "$TREE" HEAD
trap 'git -C "$ROOT" worktree remove --force "$TREE"' EXIT
[ -e "$ROOT/../shared" ] && ln -sfn "$(cd "$ROOT/../shared" && pwd)" "$(dirname "$TREE")/shared"
cd "$TREE"

mutate() {  # file, exact text (must occur once), replacement
  "$PY" - "$@" <<'PYEOF'
import pathlib, sys
path, old, new = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
text = path.read_text()
assert text.count(old) == 1, f"{path}: the mutated text must occur once: {old!r}"
path.write_text(text.replace(old, new))
PYEOF
}

try() {  # name, file, old, new, tests...
  local name=$1; shift
  git checkout -q -- .
  mutate "$1" "$2" "$3" || { echo "$name: not applied"; return; }
  shift 3
  if "$PY" -m pytest -q -x -p no:randomly "$@" >"/tmp/mutant-$name.log" 2>&1; then
    echo "$name: SURVIVED"
  else
    echo "$name: killed by $(grep -m1 -E '^(FAILED|ERROR)' "/tmp/mutant-$name.log" | cut -d' ' -f2)"
  fi
}

try observation-read-unaudited coffre/labwork/access.py \
  '    log.record(actor, "read", [row.patient_id], kind="results")' '    pass' \
  tests/test_audit_walk.py
try report-pdf-unaudited coffre/labwork/reports.py \
  '    log.record(actor, "print", [view.order.patient_id], kind="report")' '    pass' \
  tests/test_audit_walk.py
try record-page-without-second-factor coffre/accounts/acting.py \
  '        return second_factor_pending(request) or view(' \
  '        return (None if request.path.startswith("/patients/") else second_factor_pending(request)) or view(' \
  tests/test_second_factor_walk.py
try unopenable-lab-key-ignored coffre/keyring/services.py \
  $'        try:\n            _load_lab_key(lab_key)\n        except KeyProviderError as exc:  # name' \
  $'        try:\n            pass\n        except KeyProviderError as exc:  # name' \
  tests/test_cli.py
try nir-key-last-digit-only coffre/identity/french.py \
  'nir_key(nir[:13]) != nir[13:]' 'nir_key(nir[:13])[-1] != nir[14:]' \
  tests/test_french_identity.py
git checkout -q -- .
