"""Exits 0 when every pin of `<dir>/requirements.txt` is installed at its version and the
modules its `# import:` lines name can be imported.

Usage: python3 python_pins.py <dir>. Otherwise prints what is missing or differs, and exits 1.
Standard library only: it runs before anything is installed (from `cargo xtask ci` and from the
tests that drive the server with a Python SDK).
"""

import importlib
import re
import sys
from importlib import metadata
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?==([^\s;#]+)")
IMPORT = re.compile(r"^#\s*import:\s*([A-Za-z0-9_.]+)\s*$")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python3 python_pins.py <dir with requirements.txt>")
        return 2
    lines = (Path(sys.argv[1]) / "requirements.txt").read_text().splitlines()
    wrong = []
    for line in lines:
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
    for line in lines:
        module = IMPORT.match(line.strip())
        if module:
            importlib.import_module(module.group(1))
    print(f"{sys.executable}: the pins of {sys.argv[1]} are installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
