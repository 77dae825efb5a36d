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


def _section(title: str) -> str:
    return README.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_the_readme_runs_in_a_fresh_venv_made_by_its_own_install_lines(tmp_path):
    """A new user's path: the quick start's shell lines (a virtual environment, the install), then
    every Python example that needs no extra, and the command-line example, in that environment
    alone. A dependency that the examples use but the install does not bring fails here."""
    import os
    import subprocess

    (install,) = re.findall(r"```sh\n(.*?)```", _section("Quick start"), re.S)
    assert "python3 -m venv .venv" in install and "pip install -e ." in install
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(["bash", "-euc", install.replace(".venv", str(venv))], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    python = str(venv / "bin" / "python")
    # The Dask and scikit-learn sections name their own extras.
    examples = [b for b in python_blocks() if "dask" not in b and "sklearn" not in b]
    assert len(examples) >= 2
    for i, block in enumerate(examples):
        run = subprocess.run([python, "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert run.returncode == 0, f"README example {i}:\n{run.stderr[-3000:]}"
        for promised in re.findall(r"#\s*(AdjustedRand: [0-9.]+)\.\.\.", block):
            assert promised in run.stdout
    (demo,) = re.findall(r"```sh\n(online-em demo \| .*?)\s+#", _section("The command line: label a stream"))
    counts = subprocess.run(["bash", "-euc", demo], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert counts.returncode == 0, counts.stderr
    sizes = sorted(int(line.split()[0]) for line in counts.stdout.splitlines())
    assert len(sizes) == 2 and abs(sizes[0] - 4000) < 500 and abs(sizes[1] - 8000) < 500


def test_readme_test_command_is_what_ci_runs():
    section = README.split("## Tests", 1)[1]
    commands = re.findall(r"```sh\n(.*?)```", section, re.S)[0].strip().splitlines()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install, test = commands
    assert install.replace("pip install", "python -m pip install --quiet") in ci
    assert re.search(rf"^{re.escape(test)}$", ci, re.M)
