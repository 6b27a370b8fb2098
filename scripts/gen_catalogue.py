#!/usr/bin/env python3
"""Write rules/catalogue.json: every TOML file of the rule catalogue (rules/*.toml, rules/apis/*.toml)
as parsed, with the sha256 of the bytes it was parsed from. gpufix.catalog.read_catalogue_file reads
a file's table from it while the file's bytes still have that digest, so a run parses no TOML.

    python scripts/gen_catalogue.py           # (re)write rules/catalogue.json
    python scripts/gen_catalogue.py --check   # exit 1 if it is out of date

An edited or added TOML file is still read right without it (from its TOML, more slowly);
tests/cli/test_docs_sync.py fails until the JSON is regenerated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "rules"
OUT = CATALOGUE / "catalogue.json"

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def render(top: Path = CATALOGUE) -> str:
    files = {}
    for path in sorted(top.rglob("*.toml")):
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode())
        try:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))  # in the TOML's key order
        except (TypeError, ValueError):  # a TOML date or time has no JSON form: left to the parser
            continue
        if json.loads(text) != data:  # nor has a NaN (not equal to itself) any form that reads back equal
            continue
        files[path.relative_to(top).as_posix()] = {"sha256": hashlib.sha256(raw).hexdigest(), "json": text}
    doc = {"generated-by": "scripts/gen_catalogue.py from the TOML files beside it; do not edit", "files": files}
    return json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if rules/catalogue.json is out of date")
    args = ap.parse_args(argv)
    want = render()
    if args.check:
        if not OUT.exists() or OUT.read_text(encoding="utf-8") != want:
            print(f"{OUT.relative_to(ROOT)} is out of date: run python scripts/gen_catalogue.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(want, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
