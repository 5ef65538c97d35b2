"""Mutation check: do the tests notice when the code they cover is broken?

Each mutation below is a hand-written change that breaks one promise (the trainer never
steps, evaluation reads outputs backwards, the FK kernel allocates, ...). For each, this
script applies it to a copy of the repository (never to the working tree), runs the test
files that should catch it, and reports the mutation *killed* (a test failed) or
*survived* (every test passed: the tests do not prove what they claim). The copy is
restored after each mutation.

The copy is the committed tree (``HEAD``): files with uncommitted changes are taken from
``HEAD`` and untracked files left out, so work in progress cannot change the result; other
files keep their modification times so numba's on-disk caches stay valid. The tests run
with this interpreter (the repository's ``.venv``) and ``PYTHONPATH`` set to the copy, so
worker processes import the mutated code too.

Usage::

    .venv/bin/python tools/mutation_check.py            # every mutation
    .venv/bin/python tools/mutation_check.py --list
    .venv/bin/python tools/mutation_check.py --only fk --only replay --report report.md

Exit status: 0 when every mutation was killed, 1 when one survived, 2 on a setup error
(a mutation that no longer applies: its text is not found exactly once).
See docs/testing.md for the last report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` (must occur exactly once) by ``new`` in ``file``; run ``tests``."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, -k expressions
    also: tuple[tuple[str, str], ...] = ()  # further (old, new) pairs in the same file


MUTATIONS = [
    Mutation("trainer never calls opt.step()", "tools/training/trainer.py",
             "                self.opt.step()\n", "                pass  # mutated\n",
             ("tests/test_training.py", "tests/test_eval.py", "tests/test_losses.py")),
    Mutation("Trainer._load restores neither model nor optimizer", "tools/training/trainer.py",
             '        self.model.load_state_dict(ck["model"])\n'
             '        self.opt.load_state_dict(ck["opt"])\n', "",
             ("tests/test_training.py",)),
    Mutation("evaluate() reverses outputs in time", "pipeline/evaluation/observer_eval.py",
             "    y = np.concatenate(ys)\n", "    y = np.concatenate(ys)[:, ::-1]\n",
             ("tests/test_eval.py",)),
    Mutation("evaluate() ignores the warm-up", "pipeline/evaluation/observer_eval.py",
             "    k = round(warmup_s * data.rate_hz)\n", "    k = 0\n",
             ("tests/test_eval.py",)),
    Mutation("FK kernel allocates per body", "pipeline/kinematics/fk.py",
             "        px, py, pz, w, x, y, z = _local(i, ints, params, q)\n"
             "        p = ints[i, 0]\n",
             "        px, py, pz, w, x, y, z = _local(i, ints, params, q)\n"
             "        tmp = np.empty(2)\n        tmp[0] = px\n        px = tmp[0]\n"
             "        p = ints[i, 0]\n",
             ("tests/test_fk.py",)),
    Mutation("Replay.teardown never closes its file", "drivers/replay.py",
             "        if hasattr(self, \"_reader\"):\n            self._reader.close()\n",
             "        if hasattr(self, \"_reader\"):\n            pass  # mutated\n",
             ("tests/test_replay.py",)),
    Mutation("sync interpolation -> sample-and-hold", "nodes/sync/sensor_track.py",
             "                w = (grid - tp) / np.maximum(span, 1)\n",
             "                w = np.zeros(len(grid))  # mutated\n",
             ("tests/test_sync.py",)),
    Mutation("sync sample-and-hold in every path (block, gaps, one sample)",
             "nodes/sync/sensor_track.py",
             "                w = (grid - tp) / np.maximum(span, 1)\n",
             "                w = np.zeros(len(grid))  # mutated\n",
             ("tests/test_sync.py",),
             also=(("(grid - t[jp]) / np.maximum(span, 1), 0.0)", "0.0 * grid, 0.0)"),
                   ("        w = (g - tp) / max(span, 1)\n", "        w = 0.0\n"))),
    Mutation("observer reset threshold doubled", "nodes/observer/runner.py",
             "        self.reset_gap_ns = int(reset_gap_s * 1e9)\n",
             "        self.reset_gap_ns = int(2 * reset_gap_s * 1e9)\n",
             ("tests/test_observer.py",)),
    # promises the issue-19 tests added
    Mutation("restart back-off never resets", "pipeline/runtime/supervisor.py",
             "                    w.failures_in_row = 0\n", "                    pass  # mutated\n",
             ("tests/test_failure_reporting.py", "-k", "back_off")),
    Mutation("workers do not die with the supervisor", "pipeline/runtime/worker.py",
             "        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n",
             "        pass  # mutated\n",
             ("tests/test_runtime.py", "-k", "supervisor_is_killed")),
    Mutation("run folder kept at stop", "pipeline/runtime/supervisor.py",
             "        shutil.rmtree(self.run_dir, ignore_errors=True)\n",
             "        pass  # mutated\n",
             ("tests/test_runtime.py", "-k", "ctrl_c_stops")),
    Mutation("imuflow run prints no status line", "pipeline/cli/run_cmd.py",
             "        sys.stderr.write((\"\\r\\x1b[2K\" + line) if tty else line + \"\\n\")\n",
             "        pass  # mutated\n",
             ("tests/test_cli.py", "-k", "headless_with_a_status_line")),
    Mutation("recorder copies large read-only payloads", "pipeline/recording/session_format.py",
             "    if (isinstance(data, np.ndarray) and data.nbytes >= 65536",
             "    if (False and isinstance(data, np.ndarray) and data.nbytes >= 65536",
             ("tests/test_recorder.py", "-k", "without_copies")),
    Mutation("headless frames keep the first pose", "nodes/view/headless.py",
             "        write_png(path, self.renderer.render(pos, quat))\n"
             "        self.frames_written += 1\n",
             "        self.__dict__.setdefault('_first', (pos.copy(), quat.copy()))\n"
             "        write_png(path, self.renderer.render(*self._first))\n"
             "        self.frames_written += 1\n",
             ("tests/test_viewer.py", "-k", "headless_without_display")),
    Mutation("compiled step drops a hybrid's prior", "nodes/observer/gru_step.py",
             "        if self._prior is not None:\n            self._y0 += self._prior\n", "",
             ("tests/test_hybrid_observer.py", "tests/test_gru_step.py")),
    Mutation("dynamics ignores the root IMU", "nodes/dynamics/node.py",
             "            if self.params.root_acc and np.all(np.isfinite(root)):",
             "            if False and np.all(np.isfinite(root)):",
             ("tests/test_dynamics_node.py",)),
]


def _copy_tree(dest: Path) -> None:
    """The committed tree at ``dest``, modification times kept where the file is unchanged."""
    def git(*args: str) -> list[str]:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout
        return [line for line in out.split("\0") if line]

    tracked = git("ls-files", "-z")
    changed = set(git("diff", "--name-only", "-z", "HEAD"))
    for rel in tracked:
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel in changed or not src.exists():
            blob = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO,
                                  capture_output=True, check=False)
            if blob.returncode == 0:
                dst.write_bytes(blob.stdout)
        else:
            shutil.copy2(src, dst)
    for cache in REPO.rglob("__pycache__"):  # numba's caches (index files check the stamp)
        rel = cache.relative_to(REPO)
        if rel.parts[0] in (".venv", ".git") or not (dest / rel.parent).is_dir():
            continue
        shutil.copytree(cache, dest / rel, dirs_exist_ok=True)


def _run_tests(root: Path, tests: tuple[str, ...], timeout_s: float) -> tuple[str, str, float]:
    """(result, detail, seconds): killed / survived / error, with the first failure."""
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
           "--no-header", *tests]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return "killed", f"timed out after {timeout_s:g} s", time.monotonic() - t0
    took = time.monotonic() - t0
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1].strip("= ") if lines else ""
    if proc.returncode == 0:
        return "survived", summary, took
    if proc.returncode == 1:
        first = next((ln.split(" - ")[0] for ln in lines if ln.startswith("FAILED ")), summary)
        return "killed", first.removeprefix("FAILED "), took
    return "error", f"pytest exit {proc.returncode}: {summary or proc.stderr[-300:]}", took


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[],
                    help="run the mutations whose name contains this text (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--report", type=Path, help="also write the markdown table here")
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutation's tests")
    ap.add_argument("--keep", action="store_true", help="keep the copy (its path is printed)")
    ap.add_argument("--baseline", action="store_true",
                    help="first run the chosen mutations' tests on the unmutated copy (they "
                         "must pass, or a 'killed' would mean nothing)")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS
              if not args.only or any(o.lower() in m.name.lower() for o in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}\t{m.file}\t{' '.join(m.tests)}")
        return 0
    root = Path(tempfile.mkdtemp(prefix="imuflow-mutation-"))
    results = []
    try:
        _copy_tree(root)
        print(f"copy of HEAD at {root}", file=sys.stderr)
        if args.baseline:
            for tests in dict.fromkeys(m.tests for m in chosen):
                result, detail, took = _run_tests(root, tests, args.timeout)
                print(f"baseline {took:6.1f} s  {' '.join(tests)}: {detail}", file=sys.stderr)
                if result != "survived":  # the unmutated code must pass
                    print(f"the unmutated tests fail ({detail}): no mutation run",
                          file=sys.stderr)
                    return 2
        for m in chosen:
            path = root / m.file
            original = mutated = path.read_text()
            for old, new in ((m.old, m.new), *m.also):
                if mutated.count(old) != 1:
                    print(f"mutation '{m.name}' does not apply: {old!r} occurs "
                          f"{mutated.count(old)} times in {m.file}", file=sys.stderr)
                    return 2
                mutated = mutated.replace(old, new)
            stat = path.stat()
            path.write_text(mutated)
            try:
                result, detail, took = _run_tests(root, m.tests, args.timeout)
            finally:
                path.write_text(original)
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
            results.append({"mutation": m.name, "file": m.file, "tests": " ".join(m.tests),
                            "result": result, "detail": detail, "seconds": round(took, 1)})
            print(f"{result:8s} {took:6.1f} s  {m.name}: {detail}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    table = ["| mutation | tests run | result | first failing test |", "|---|---|---|---|"]
    for r in results:
        table.append(f"| {r['mutation']} (`{r['file']}`) | `{r['tests']}` | {r['result']} "
                     f"| {r['detail']} |")
    text = "\n".join(table)
    print(text)
    if args.report:
        args.report.write_text(text + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if any(r["result"] == "error" for r in results):
        return 2
    return 1 if any(r["result"] == "survived" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
