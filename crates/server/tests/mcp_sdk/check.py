"""Exits 0 when every pin of requirements.txt (beside this file) is installed at its version.

Otherwise prints what is missing or differs, and exits 1. Standard library only: it runs
before anything is installed (from `cargo xtask ci` and from the tests).
"""

import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)")


def main() -> int:
    wrong = []
    for line in (Path(__file__).parent / "requirements.txt").read_text().splitlines():
        pin = PIN.match(line.strip())
        if not pin:
            continue
        name, wanted = pin.groups()
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            have = None
        if have != wanted:
            wrong.append(f"{name}=={wanted} (installed: {have or 'none'})")
    if wrong:
        print(f"{sys.executable}: not as pinned: {', '.join(wrong)}")
        return 1
    import mcp.client.streamable_http  # noqa: F401  (the pins import)

    print(f"{sys.executable}: the mcp SDK and its pins are installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
