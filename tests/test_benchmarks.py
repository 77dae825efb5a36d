"""Smoke test of the benchmark harness: `python benchmarks/run.py --quick` runs and prints tables.

No assertion is made on any timing: the quick sizes are far too small for the numbers to mean
anything, and CI machines are shared.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = os.path.join(ROOT, "benchmarks", "run.py")

pytest.importorskip("sklearn")


def test_quick_run_prints_a_markdown_table(tmp_path):
    output = tmp_path / "results.md"
    proc = subprocess.run(
        [sys.executable, RUN, "--quick", "--output", str(output), "--plot", str(tmp_path / "scaling.png")],
        capture_output=True, text=True, timeout=240, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "## Summary" in out
    assert "| comparison | case | ours | reference | ratio | target |" in out
    assert "|---|" in out
    for comparison in ("1. per point", "2. mini-batch", "3. the limit", "3b. references", "4. CLI", "5. memory", "7. real data",
                       "8. missing values", "9. anomalies"):
        assert f"| {comparison} |" in out, comparison
    assert "## 6. Scaling in K and D" in out
    assert "## 7. Real data, against scikit-learn and River" in out
    assert "## 9. Anomaly detection, against River's HalfSpaceTrees" in out
    assert "| iris (150×4, K=3) | file | ours-learn_one |" in out
    assert "## 8. Missing values (issue 11)" in out and "| mean imputation |" in out
    assert "CPU:" in out
    written = output.read_text()
    assert written.startswith("# online_em benchmarks")
    assert "## Summary" in written


def test_the_warm_up_selection_script_runs_and_both_sides_print_a_table():
    """`benchmarks/warmup_selection.py` on a tiny stream (two clusters in 3-D, 800 points), with and
    without the merge test: both print their table, and two well-apart clusters are found."""
    script = os.path.join(ROOT, "benchmarks", "warmup_selection.py")
    for extra in ([], ["--no-merge"]):
        proc = subprocess.run(
            [sys.executable, script, "--n", "800", "--features", "3", "--clusters", "2", "--seeds", "1", *extra],
            capture_output=True, text=True, timeout=120, cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "| seed | active | ARI | warm_up | time |" in proc.stdout
        assert "| 0 | 2 |" in proc.stdout, proc.stdout
        assert ("AIC alone" in proc.stdout) == bool(extra)
