"""Regenerate the README's "Bad input" table: run every case of tests/test_reliability_cli.py against the CLI and
write a markdown table (kind, command, exit code, the line the user reads).

    python3 scripts/bad_input_table.py [--out docs/bad_input.md]

Inputs and tiny models are built in a temporary directory; paths in the table are relative to it.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "src"), str(REPO / "tests")]

from test_reliability_cli import build_cases, make_tiny_llm, message_line, run_case  # noqa: E402


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "bad_input.md", help="markdown file to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bad-input-") as tmp:
        root = Path(tmp)
        cases = build_cases(root / "inputs", make_tiny_llm(root / "tiny-llm"))
        with ThreadPoolExecutor(2) as pool:
            procs = list(pool.map(lambda case: run_case(case, root / "home"), cases))

        def rel(text: str) -> str:
            text = text.replace(str(root / "inputs") + "/", "").replace(str(root) + "/", "")
            return re.sub(r"/tmp/\S+/", "", text)

        rows = ["| kind | command | exit | message |", "|---|---|---|---|"]
        failed = 0
        for case, proc in zip(cases, procs, strict=True):
            ok = proc.returncode == case.rc and "Traceback" not in proc.stderr
            failed += not ok
            command = "speechbraid " + " ".join(shlex.quote(rel(arg)) for arg in case.argv)
            status = str(proc.returncode) + ("" if ok else f" (expected {case.rc})")
            rows.append(f"| {_cell(case.kind)} | `{_cell(command)}` | {status} | "
                        f"`{_cell(rel(message_line(case, proc)))}` |")
    table = "\n".join(rows) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table, encoding="utf-8")
    print(table, end="")
    print(f"wrote {args.out}; {len(cases) - failed} of {len(cases)} cases as expected", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
