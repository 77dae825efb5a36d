"""README.md stays true: its Python examples run, and its test command is the one CI runs."""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def python_blocks():
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    # The Spark sketch needs a SparkContext; everything else runs as written.
    return [block for block in blocks if "sc.broadcast" not in block]


def test_the_scaling_out_example_runs_as_a_script(tmp_path):
    """The Dask example starts worker processes under `if __name__ == "__main__"`: run it as the
    script it is, and check the output its comment promises."""
    pytest.importorskip("distributed")
    import subprocess
    import sys

    (block,) = [b for b in python_blocks() if "LocalCluster" in b]
    script = tmp_path / "scaling_out.py"
    script.write_text(block, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    promised = re.search(r"# (2000000 \[\[.*\]\])", block).group(1)
    assert done.stdout.strip().splitlines()[-1] == promised


@pytest.mark.parametrize("index", range(len(python_blocks())))
def test_python_examples_run(index, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    block = python_blocks()[index]
    if "import dask" in block or "online_em.dask" in block:
        pytest.importorskip("distributed")
    exec(compile(block, f"README.md block {index}", "exec"), {"__name__": "readme_example"})
    printed = capsys.readouterr().out
    for line in block.splitlines():  # "print(...)  # AdjustedRand: 0.94..." documents the output
        match = re.search(r"print\(.*#\s*(AdjustedRand: [0-9.]+)\.\.\.", line)
        if match:
            assert match.group(1) in printed


def test_readme_test_command_is_what_ci_runs():
    section = README.split("## Tests", 1)[1]
    commands = re.findall(r"```sh\n(.*?)```", section, re.S)[0].strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, test = commands
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    assert re.search(rf"^{re.escape(test)}$", ci, re.M)
