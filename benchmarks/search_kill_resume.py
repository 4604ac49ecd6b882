"""SIGKILL a running ``menas-zoo search`` in the middle of a trial, resume it, and check the run folder.

1. an uninterrupted reference search (same settings, same seed);
2. the same search in a subprocess, killed with SIGKILL once ``--kill-after`` trials are finished and the
   next one has been running for a while (so the kill lands inside a trial);
3. ``menas-zoo search --resume`` on the killed folder.

Checks: every trial finished before the kill is still there, byte for byte; no trial index appears twice
(nothing re-run); and the resumed run ends with the reference's trials and population. Also prints
the trials per minute of the reference run.

    python benchmarks/search_kill_resume.py --out /tmp/kill-resume
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from menas_zoo.space.sampling import SearchProfile

PROFILE = SearchProfile(name="small", resolution=28, stage_strides=(2, 2), base_widths=(8, 16), max_depth=2,
                        stem_choices=(8,), head_choices=(16, 32), fc_choices=(0, 16), kernels=(3, 5),
                        expansions=(1, 2, 3), width_mults=(1.0, 2.0))


def search(*args: str) -> list[str]:
    return [sys.executable, "-c", "from menas_zoo.cli import main; main()", "search", *args]


def trial_lines(out: Path) -> list[str]:
    path = out / "trials.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kill-after", type=int, default=5, help="finished trials before the kill")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    profile = args.out / "profile.json"
    profile.write_text(json.dumps(dataclasses.asdict(PROFILE)))
    settings = ["--profile", str(profile), "--population", "4", "--generations", "2", "--epochs", "3",
                "--train-subset", "512", "--val-size", "512", "--device", "cpu", "--threads", "1", "--seed", "7",
                "--json"]
    reference, killed = args.out / "reference", args.out / "killed"

    started = time.perf_counter()
    subprocess.run(search("--out", str(reference), *settings), check=True, stdout=subprocess.PIPE)
    ref_summary = json.loads((reference / "trials.jsonl").read_text().splitlines()[-1])
    ref_minutes = (time.perf_counter() - started) / 60
    ref_trials = trial_lines(reference)
    print(f"reference: {len(ref_trials)} trials in {ref_minutes:.2f} min of wall clock "
          f"(process start included): {len(ref_trials) / ref_minutes:.1f} trials/min; "
          f"last trial took {ref_summary['seconds']:.1f}s")

    proc = subprocess.Popen(search("--out", str(killed), *settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while len(trial_lines(killed)) < args.kill_after:
        if proc.poll() is not None:
            sys.exit("the search finished before it could be killed; lower --kill-after")
        time.sleep(0.05)
    time.sleep(0.5 * ref_summary["seconds"])  # halfway into the next trial
    before = trial_lines(killed)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    print(f"killed with SIGKILL after {len(before)} finished trials (inside trial {len(before)})")
    leftovers = [p.name for p in killed.rglob("*.tmp")]
    ran = subprocess.run(search("--resume", str(killed), "--threads", "1", "--json"), check=True,
                         stdout=subprocess.PIPE, text=True)
    after = trial_lines(killed)
    indices = [json.loads(line)["index"] for line in after]
    kept = after[:len(before)] == before
    unique = len(indices) == len(set(indices))
    ref_state = json.loads((reference / "state.json").read_text())
    new_state = json.loads((killed / "state.json").read_text())

    def strip(lines: list[str]) -> list[tuple]:
        rows = [json.loads(line) for line in lines]
        return sorted((r["index"], json.dumps(r["genotype"]), r["fitness"]) for r in rows)

    same = strip(after) == strip(ref_trials) and new_state["population"] == ref_state["population"]
    print(f"temporary files left by the kill: {leftovers or 'none'}")
    print(f"finished trials kept unchanged: {kept}; trial indices unique (nothing re-run): {unique}")
    print(f"resumed run: {len(after)} trials, {json.loads(ran.stdout)['trials']} in its summary; "
          f"same trials and population as the uninterrupted run: {same}")
    sys.exit(0 if kept and unique and same else 1)


if __name__ == "__main__":
    main()
