"""Chapters 3-5 on LMs of architectures no stand-in uses: tiny random-init Falcon, Mistral, Phi and
GPT-Neo layouts (tests/tiny_models.py: 256-position contexts, tokenizers that split words into
pieces), each saved into a temporary folder and plugged in with `--set lm_model=FOLDER`.

    .venv/bin/python tools/foreign_lms.py                  # every layout, chapters 03 04 05
    .venv/bin/python tools/foreign_lms.py --arch phi --chapters 04

Each chapter runs on its own (`vlbridge run NN --profile smoke ... --out TMP`), one after another,
so one failure does not hide the next; caches and results go to a temporary folder (VLBRIDGE_CACHE,
--out), never to the user's cache or results/. Prints, per layout and chapter, "ran to the end" or
the failing cell and its error; exits 1 if any failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_models import FOREIGN_LMS, microworld_texts, save_foreign_lm  # noqa: E402


def failure(output: str) -> str:
    """The runner's one-line account of a failed chapter ('chapter ... failed in cell N (...): Error: ...'),
    else the last lines of the output."""
    lines = [line for line in output.splitlines() if line.strip()]
    said = [line for line in lines if " failed in " in line]
    return said[-1] if said else " | ".join(lines[-3:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", nargs="+", choices=FOREIGN_LMS, default=list(FOREIGN_LMS))
    parser.add_argument("--chapters", nargs="+", default=["03", "04", "05"])
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per chapter run")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="vlbridge-foreign-lms-"))
    work.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"VLBRIDGE_CACHE": str(work / "cache"), "VLBRIDGE_PROGRESS": "0"}
    print(f"working in {work}", flush=True)
    texts = microworld_texts()
    results, failed = [], False
    try:
        for arch in args.arch:
            folder = save_foreign_lm(work / "lms" / arch, arch, texts=texts)
            for chapter in args.chapters:
                started = time.time()
                command = [str(REPO / ".venv" / "bin" / "vlbridge"), "run", chapter, "--profile", "smoke",
                           "--set", f"lm_model={folder}", "--out", str(work / "results" / arch), "--no-progress"]
                try:
                    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
                    ok, said = done.returncode == 0, failure(done.stdout + done.stderr)
                except subprocess.TimeoutExpired:
                    ok, said = False, f"timed out after {args.timeout} s"
                failed |= not ok
                line = f"{arch:8s} {chapter}  " + (f"ran to the end ({time.time() - started:.0f} s)" if ok else
                                                    f"FAILED ({time.time() - started:.0f} s): {said}")
                results.append(line)
                print(line, flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print("\nsummary\n" + "\n".join(results))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
