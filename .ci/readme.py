"""Follow the README literally on a clean checkout, so the README cannot drift from the code.

    python .ci/readme.py install      # the Quickstart's first code block: install, then the test command
    python .ci/readme.py quickstart   # its second block: the main commands, shrunk by SMOKE_FLAGS

Each command line of a ```bash block under "## Quickstart" runs as written (comments dropped); in the
second block the flags the README documents for a smoke run are appended, and `<timestamp>` stands
for the newest run of that stage. Any failing command fails CI with its exit status.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The smoke-run flags, as the README's Quickstart documents them.
SMOKE_FLAGS = {"eval.py": "--n 2 --levels 3 --tasks frozenlake,maze --no-progress",
               "train.py": "--steps 2 --n-per-level 2 --eval-n 1 --levels 3 --tasks frozenlake"}


def quickstart_blocks(readme: str) -> list[list[str]]:
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [[line.split("#", 1)[0].strip() for line in b.splitlines() if line.split("#", 1)[0].strip()] for b in blocks]


def smoke(command: str) -> str:
    for script, flags in SMOKE_FLAGS.items():
        if f" {script}" in f" {command}":
            command = f"{command} {flags}"
    for stage in re.findall(r"runs/(\w+)-<timestamp>", command):
        newest = sorted((ROOT / "runs").glob(f"{stage}-*"))[-1]
        command = command.replace(f"runs/{stage}-<timestamp>", str(newest.relative_to(ROOT)))
    return command


def main(which: str) -> int:
    blocks = quickstart_blocks((ROOT / "README.md").read_text())
    for command in blocks[0] if which == "install" else blocks[1]:
        command = command if which == "install" else smoke(command)  # at run time: <timestamp> = the newest run so far
        print(f"+ {command}", flush=True)
        rc = subprocess.call(shlex.split(command), cwd=ROOT)
        if rc != 0:
            print(f"README command failed with exit status {rc}: {command}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "install"))
