"""The `online-em` command as a real process, through OS pipes: closed pipes, bad input, signals."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from online_em import OnlineGaussianMixture
from online_em.cli import demo_stream

from .test_cli import mixed_lines

CMD = [sys.executable, "-m", "online_em"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes and signals")


def pipeline(*commands, input=None, timeout=60):
    """Run commands connected by OS pipes, like a shell's `a | b | c`; returns each process's
    (return code, stderr) and the last one's stdout."""
    procs = []
    stdin = subprocess.PIPE if input is not None else subprocess.DEVNULL
    for i, command in enumerate(commands):
        proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        if i and procs[-1].stdout:
            procs[-1].stdout.close()  # only the next process holds the read end, as in a shell
        procs.append(proc)
        stdin = proc.stdout
    if input is not None:
        def feed():
            try:
                procs[0].stdin.write(input)
                procs[0].stdin.close()
            except BrokenPipeError:
                pass
        threading.Thread(target=feed, daemon=True).start()
    errors = {}

    def drain(i, proc):
        errors[i] = proc.stderr.read()

    threads = [threading.Thread(target=drain, args=(i, p)) for i, p in enumerate(procs)]
    for t in threads:
        t.start()
    out = procs[-1].stdout.read()
    results = []
    for i, proc in enumerate(procs):
        proc.wait(timeout=timeout)
        threads[i].join(timeout)
        results.append((proc.returncode, errors[i].decode()))
    return results, out


def test_a_closed_pipe_ends_quietly():
    for label in (["label"], ["label", "--batch-size", "1024"]):
        results, out = pipeline(CMD + ["demo", "--n", "200000"], CMD + label, ["head", "-3"])
        labels = out.decode().split()
        assert len(labels) == 3 and len(set(labels)) == 1 and labels[0] in ("0", "1"), labels
        for code, stderr in results:
            assert (code, stderr) == (0, "")


def test_demo_into_label_through_a_pipe_labels_90_percent_right():
    results, out = pipeline(CMD + ["demo"], CMD + ["label"])
    assert [code for code, _ in results] == [0, 0]
    labels = np.array(out.split(), dtype=int)
    _, truth = demo_stream()
    assert len(labels) == len(truth) == 12_000
    accuracy = max((labels == truth).mean(), (labels != truth).mean())
    assert accuracy >= 0.9


def test_mixed_file_through_a_pipe_gives_1000_labels_50_na_and_50_warnings(tmp_path):
    data, bad = mixed_lines(seed=1)
    path = tmp_path / "mixed.txt"
    path.write_bytes(data)
    with open(path, "rb") as stdin:
        proc = subprocess.run(CMD + ["label", "--warm-up", "50", "--seed", "0"], stdin=stdin,
                              capture_output=True, env=ENV, timeout=60)
    assert proc.returncode == 0
    out = proc.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) == 1051
    out = out[:-1]
    assert sum(v in ("0", "1") for v in out) == 1000
    assert [i + 1 for i, v in enumerate(out) if v == "NA"] == bad
    warnings = proc.stderr.decode().splitlines()
    assert len(warnings) == 50
    assert [int(re.match(r"online-em: warning: line (\d+): ", w).group(1)) for w in warnings] == bad


def test_on_error_fail_through_a_pipe_exits_1_with_earlier_labels_and_the_state(tmp_path):
    state = tmp_path / "m.json"
    lines = [f"{x:.3f}" for x in np.random.default_rng(0).normal(size=300)]
    data = ("\n".join(lines[:120]) + "\n1,2,3\n" + "\n".join(lines[120:]) + "\n").encode()
    for batch in ("1", "64"):
        if state.exists():
            state.unlink()
        proc = subprocess.run(CMD + ["label", "--warm-up", "20", "--on-error", "fail", "--batch-size", batch,
                                     "--state", str(state)], input=data, capture_output=True, env=ENV, timeout=60)
        assert proc.returncode == 1
        assert len(proc.stdout.split()) == 120
        assert proc.stderr.decode() == "online-em: error: line 121: expected 1 field(s), got 3: '1,2,3'\n"
        assert OnlineGaussianMixture.load(state).n_samples_seen == 120


def _start_live(tmp_path, *extra):
    state = tmp_path / "m.json"
    proc = subprocess.Popen(CMD + ["label", "--warm-up", "20", "--seed", "0", "--state", str(state), *extra],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
    return proc, state


def _read_line(proc, timeout=20.0):
    """One line of the process's stdout, or fail after `timeout` seconds (it must be live)."""
    result = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result, "no output line: the labeler did not flush it"
    return result[0]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGHUP, 129)])
def test_a_signal_during_a_slow_pipe_saves_a_state_that_loads(tmp_path, signum, code):
    proc, state = _start_live(tmp_path)
    rng = np.random.default_rng(1)
    try:
        for i, x in enumerate(rng.normal(size=60)):
            proc.stdin.write(f"{x}\n".encode())
            proc.stdin.flush()
            assert _read_line(proc).strip() in (b"0", b"1")  # labelled live, before the next line
        assert not state.exists()  # saved only at the end, a checkpoint, or a signal
        proc.send_signal(signum)  # while it waits for the next line
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert proc.stderr.read().decode() == (
        f"online-em: interrupted by {signal.Signals(signum).name}; state saved to {state}\n")
    model = OnlineGaussianMixture.load(state)
    assert model.n_samples_seen == 60 and model.is_initialised


@pytest.mark.parametrize("batch", [1, 4])
def test_each_line_or_block_is_answered_before_the_next_is_sent(tmp_path, batch):
    """A producer that waits for the answers before it writes more: the labeler must flush what
    it has before it waits for input, however it buffers its reads and writes."""
    proc, _ = _start_live(tmp_path, "--batch-size", str(batch))
    rng = np.random.default_rng(3)
    try:
        for _ in range(30):
            proc.stdin.write("".join(f"{x:.4f}\n" for x in rng.normal(size=batch)).encode())
            proc.stdin.flush()
            for _ in range(batch):
                assert _read_line(proc).strip() in (b"0", b"1")
        proc.stdin.close()
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()


def test_sigterm_while_busy_leaves_a_state_that_loads_and_holds_every_labelled_line(tmp_path):
    proc, state = _start_live(tmp_path, "--batch-size", "1")
    stop = threading.Event()

    def feed():
        rng = np.random.default_rng(2)
        try:
            while not stop.is_set():
                proc.stdin.write(("\n".join(f"{x}" for x in rng.normal(size=200)) + "\n").encode())
                proc.stdin.flush()
                time.sleep(0.005)
        except (BrokenPipeError, ValueError, OSError):
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        for _ in range(1500):
            _read_line(proc)
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        proc.wait(timeout=20)
    finally:
        stop.set()
        proc.kill()
    assert proc.returncode == 143
    labelled = 1500 + len(rest.split())
    # every labelled line is in the state; at most one more, if the signal hit while writing its label
    assert labelled <= OnlineGaussianMixture.load(state).n_samples_seen <= labelled + 1
    assert not [p for p in tmp_path.iterdir() if p.name not in ("m.json", "m.json.lock")]  # no temporary file


def test_python_dash_m_and_the_console_script():
    proc = subprocess.run(CMD + ["--help"], capture_output=True, env=ENV, timeout=30)
    assert proc.returncode == 0 and b"online-em" in proc.stdout
    script = shutil.which("online-em") or (
        os.path.join(os.path.dirname(sys.executable), "online-em")
        if os.path.exists(os.path.join(os.path.dirname(sys.executable), "online-em")) else None)
    if script is None:
        pytest.skip("the online-em console script is not installed")
    proc = subprocess.run([script, "demo", "--n", "5"], capture_output=True, env=ENV, timeout=30)
    assert proc.returncode == 0 and len(proc.stdout.split()) == 5


def test_usage_error_exits_2_through_the_real_entry_point():
    proc = subprocess.run(CMD + ["label", "--batch-size", "zero"], capture_output=True, env=ENV, timeout=30)
    assert proc.returncode == 2
    assert b"Invalid value for '--batch-size'" in proc.stderr and b"Traceback" not in proc.stderr


SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts")


def test_the_label_stream_script_labels_the_demo_and_marks_bad_lines():
    values, truth = demo_stream(3000, seed=5)
    data = "".join(f"{v}\n" for v in values[:1500]) + "oops\n" + "".join(f"{v}\n" for v in values[1500:])
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "label_stream.py")], input=data.encode(),
                          capture_output=True, env=ENV, timeout=60)
    assert proc.returncode == 0
    out = proc.stdout.decode().split()
    assert out[1500] == "NA" and proc.stderr.decode() == "line 1501: not a number: 'oops'\n"
    labels = np.array(out[:1500] + out[1501:], dtype=int)
    assert max((labels == truth).mean(), (labels != truth).mean()) >= 0.9


def test_the_tutorial_script_compares_with_scikit_learn_and_saves_a_figure(tmp_path):
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    png = tmp_path / "tutorial.png"
    proc = subprocess.run([sys.executable, os.path.join(SCRIPTS, "seed_tutorial.py"), "--png", str(png)],
                          capture_output=True, env=ENV, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    first = re.search(r"first 80 labels: ([01]{80})\n", out)
    last = re.search(r"last 80 labels: +([01]{80})\n", out)
    assert first and last
    means = re.search(r"online EM .*means \[\s*([\d.]+)\s+([\d.]+)\]", out)
    assert abs(float(means.group(1)) - 20) < 1 and abs(float(means.group(2)) - 40) < 1
    agree = re.search(r"agree on ([\d.]+)% of points", out)
    assert float(agree.group(1)) > 97
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("through", ["file", "pipe"])
def test_a_signal_as_a_write_returns_waits_and_nothing_is_written_twice(tmp_path, monkeypatch, through):
    """A signal whose handler ran just after a write to stdout had returned used to raise there, so
    the buffered writer never learned that those bytes were out and wrote them again on the final
    flush (seen as 200 labels more than the saved state held, on a busy machine). The labeler's guard
    now holds such a signal until the write has returned."""
    from online_em import streams
    from online_em.labeler import _Interrupted, _SignalGuard

    guard = _SignalGuard()
    real_write, signalled = os.write, []

    if through == "pipe":
        read_end, fd = os.pipe()
    else:
        fd = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT)

    def write_then_signal(to, data):
        n = real_write(to, data)
        if to == fd and not signalled:  # the signal lands as the system call returns
            signalled.append(True)
            guard._handler(signal.SIGTERM, None)
        return n

    out = streams.io.BufferedWriter(streams._Stdout(fd, guard), buffer_size=1 << 16)
    monkeypatch.setattr(streams.os, "write", write_then_signal)
    out.write(b"".join(b"%d\n" % i for i in range(100)))
    out.flush()  # without the hold: _Interrupted here, the bytes kept in the buffer, written again below
    with pytest.raises(_Interrupted):
        guard.poll()  # the signal waited for the write, and is raised now
    out.flush()
    os.close(fd)
    if through == "pipe":
        written = b""
        while chunk := os.read(read_end, 1 << 16):
            written += chunk
        os.close(read_end)
    else:
        written = (tmp_path / "out").read_bytes()
    assert written == b"".join(b"%d\n" % i for i in range(100))
