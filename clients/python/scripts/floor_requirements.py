"""Prints the oldest versions pyproject.toml claims to support, one `name==version` a line, for
test.sh's floor run. The floors live only in pyproject.toml; this derives the pins from them."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"
FLOOR = re.compile(r"^([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9A-Za-z.]*)\s*(,.*)?$")


def main() -> int:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    for requirement in dependencies:
        match = FLOOR.match(requirement)
        if not match:
            # Every runtime dependency needs a floor, or the floor run tests nothing for it.
            print(f"{PYPROJECT}: dependency {requirement!r} has no >= floor", file=sys.stderr)
            return 1
        print(f"{match.group(1)}=={match.group(2)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
