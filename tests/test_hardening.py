"""Faults a user or a tester meets, one class each: the message is clear, nothing is lost.

Each test names the item of the hardening issue it covers (1 to 13). Real processes, pipes and
signals where the behaviour lives in the operating system (locks, full devices, symbolic links).
"""

from __future__ import annotations

import decimal
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from online_em import OnlineGaussianMixture, labeler, validation
from online_em.cli import cli
from online_em.persistence import StateFileError
from online_em.records import NumericParser, RecordError

CMD = [sys.executable, "-m", "online_em"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
FAST = ["--warm-up", "20", "--seed", "0"]
posix = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes, signals and locks")


def invoke(args, input=None):
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


def values_text(n=200, seed=0) -> str:
    rng = np.random.default_rng(seed)
    return "".join(f"{x:.4f}\n" for x in np.where(rng.random(n) < 0.5, 0.0, 10.0) + rng.normal(size=n))


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("online-em: warning:")]


@pytest.fixture
def saved(tmp_path):
    """A state file of a model that has learned 300 two-dimensional points."""
    model = OnlineGaussianMixture(n_components=2, warm_up=50, average_after=100, seed=0)
    X = np.random.default_rng(0).normal(size=(300, 2))
    X[150:] += 8.0
    model.learn_many(X)
    path = tmp_path / "m.json"
    model.save(path)
    return path


# ------------------------------------------------------------------ 1. integers beyond Python's limit


@pytest.mark.parametrize("batch", ["1", "64"])
def test_1_a_json_integer_of_5000_digits_is_one_bad_line(batch):
    lines = [json.dumps({"x": float(v)}) for v in values_text(40).split()]
    lines.insert(25, '{"x": ' + "9" * 5000 + "}")
    result = invoke(["label", "--format", "jsonl", *FAST, "--batch-size", batch], "\n".join(lines) + "\n")
    assert result.exit_code == 0
    out = result.stdout.split()
    assert len(out) == 41 and out[25] == "NA" and out.count("NA") == 1
    (warning,) = warnings(result.stderr)
    assert warning.startswith("online-em: warning: line 26: invalid JSON (a number with too many digits)")


@pytest.mark.parametrize("batch", ["1", "64"])
def test_1_a_text_number_of_5000_digits_is_one_bad_line_and_a_huge_column_a_usage_error(batch):
    data = values_text(40).split()
    data.insert(25, "9" * 5000)
    result = invoke(["label", *FAST, "--batch-size", batch], "\n".join(data) + "\n")
    assert result.exit_code == 0 and result.stdout.split().count("NA") == 1
    assert "line 26: field 1 is not a finite number" in result.stderr and len(result.stderr) < 300
    usage = CliRunner().invoke(cli, ["label", "--columns", "9" * 5000], input="1\n")
    assert usage.exit_code == 2 and "column number too large" in usage.stderr and len(usage.stderr) < 400


def test_1_a_state_file_holding_such_a_number_cannot_be_loaded(saved):
    text = saved.read_text()
    saved.write_text(re.sub(r'"t": \d+', '"t": ' + "1" * 5000, text))
    damaged = saved.read_bytes()
    with pytest.raises(StateFileError, match="too many digits"):
        OnlineGaussianMixture.load(saved)
    result = invoke(["label", "--state", str(saved)], "1,2\n")
    assert result.exit_code == 1
    assert result.stderr.startswith("online-em: error: cannot load the state:")
    assert "Traceback" not in result.stderr and saved.read_bytes() == damaged


# ------------------------------------------------------------------ 2. state path checked first


@pytest.mark.parametrize("where", ["missing-folder/m.json", "a-file/m.json", "dangling-link/m.json"])
@pytest.mark.parametrize("extra", [[], ["--checkpoint-every", "5"]])
def test_2_an_unwritable_state_path_is_refused_before_reading(tmp_path, where, extra):
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "dangling-link").symlink_to(tmp_path / "nowhere")
    state = tmp_path / where
    proc = subprocess.run(CMD + ["label", *FAST, "--state", str(state), *extra], input=values_text().encode(),
                          capture_output=True, env=ENV, timeout=60)
    assert proc.returncode == 1
    assert proc.stdout == b""  # nothing was read, nothing labelled
    (line,) = proc.stderr.decode().splitlines()
    assert line.startswith(f"online-em: error: cannot write the state file {state}: ")
    assert ".tmp" not in line


@posix
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_2_a_read_only_folder_is_refused_before_reading(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        proc = subprocess.run(CMD + ["label", *FAST, "--state", str(folder / "m.json")], input=b"1\n",
                              capture_output=True, env=ENV, timeout=60)
    finally:
        folder.chmod(0o700)
    assert (proc.returncode, proc.stdout) == (1, b"")
    assert proc.stderr.decode() == f"online-em: error: cannot write the state file {folder / 'm.json'}: " \
                                   "Permission denied\n"


@pytest.mark.parametrize("checkpoint", [[], ["--checkpoint-every", "50"]])
def test_2_a_later_save_failure_is_one_message_and_keeps_the_old_state(saved, monkeypatch, checkpoint):
    before = saved.read_bytes()

    def full_disk(*args):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(os, "replace", full_disk)
    lines = "".join(f"{x:.3f},{y:.3f}\n" for x, y in np.random.default_rng(1).normal(size=(120, 2)))
    result = invoke(["label", "--state", str(saved), *checkpoint], lines)
    assert result.exit_code == 1
    assert result.stderr == f"online-em: error: cannot save the state to {saved}: No space left on device " \
                            "(the file is as it was)\n"
    assert saved.read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m.json", "m.json.lock"]  # no temporary file


# ------------------------------------------------------------------ 3. one writer at a time


def _live(state, *extra):
    return subprocess.Popen(CMD + ["label", *FAST, "--state", str(state), *extra], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


@posix
def test_3_a_second_run_on_a_locked_state_refuses_or_waits_and_no_update_is_lost(tmp_path):
    state = tmp_path / "m.json"
    first = _live(state)
    try:
        first.stdin.write(values_text(100, seed=1).encode())
        first.stdin.flush()
        assert first.stdout.readline().strip() in (b"0", b"1")  # it runs, holding the lock
        refused = subprocess.run(CMD + ["label", *FAST, "--state", str(state)], input=values_text(50).encode(),
                                 capture_output=True, env=ENV, timeout=60)
        assert refused.returncode == 1 and refused.stdout == b""
        assert refused.stderr.decode().startswith(
            f"online-em: error: another online-em run is using the state file {state} (process {first.pid};")
        waiting = _live(state, "--wait")
        first.stdin.close()  # the first run ends and saves; then the waiting one loads its state
        assert first.wait(timeout=60) == 0
        out, err = waiting.communicate(values_text(70, seed=2).encode(), timeout=60)
        assert waiting.returncode == 0, err
        assert len(out.split()) == 70
    finally:
        first.kill()
    assert OnlineGaussianMixture.load(state).n_samples_seen == 100 + 70


def test_3_wait_without_a_state_to_lock_is_a_usage_error():
    assert invoke(["label", "--wait"], "1\n").exit_code == 2


# ------------------------------------------------------------------ 4. output errors


@posix
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("batch", ["1", "256"])
def test_4_a_full_device_is_one_line_exit_1_and_the_state_saved(tmp_path, batch):
    state = tmp_path / "m.json"
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(CMD + ["label", *FAST, "--batch-size", batch, "--state", str(state)],
                              input=values_text(50_000).encode(), stdout=full, stderr=subprocess.PIPE,
                              env=ENV, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.decode() == f"online-em: error: write error: No space left on device; state saved to {state}\n"
    assert OnlineGaussianMixture.load(state).n_samples_seen > 0


@posix
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["demo"], ["--help"]])
def test_4_other_commands_into_a_full_device_say_so_in_one_line(args):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(CMD + args, stdout=full, stderr=subprocess.PIPE, env=ENV, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.decode() == "online-em: error: write error: No space left on device\n"


@posix
def test_4_a_closed_stdout_is_nobody_reading_exit_0_and_the_state_saved(tmp_path):
    state = tmp_path / "m.json"
    proc = subprocess.run(CMD + ["label", *FAST, "--state", str(state)], input=values_text(100).encode(),
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV, timeout=60,
                          preexec_fn=lambda: os.close(1))
    assert (proc.returncode, proc.stderr) == (0, b"")
    assert OnlineGaussianMixture.load(state).n_samples_seen == 100


# ------------------------------------------------------------------ 5. SIGHUP: see also test_cli_pipes


def test_5_sighup_is_handled_like_sigterm():
    assert signal.SIGHUP in labeler._SIGNALS


# ------------------------------------------------------------------ 6. symbolic links


@posix
def test_6_a_symlinked_state_is_written_through_to_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "model.json"
    link = tmp_path / "link.json"
    link.symlink_to(target)  # dangling at first: the first save creates the target
    for seed in (1, 2):
        result = invoke(["label", *FAST, "--state", str(link)], values_text(60, seed))
        assert result.exit_code == 0
        assert link.is_symlink() and os.readlink(link) == str(target)
    assert OnlineGaussianMixture.load(target).n_samples_seen == 120
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.json", "model.json.lock"]


# ------------------------------------------------------------------ 7. model size, signals while fitting


@pytest.mark.parametrize("fmt, line", [
    ("text", ",".join(["1"] * 250_000)),
    ("text", " ".join(["1"] * 10_000)),
    ("jsonl", json.dumps({f"k{i}": 1 for i in range(10_000)})),
])
def test_7_a_first_line_of_too_many_fields_is_a_bad_line_not_a_huge_model(fmt, line):
    following = values_text(30) if fmt == "text" else "".join(
        json.dumps({"k0": float(v)}) + "\n" for v in values_text(30).split())
    result = invoke(["label", "--format", fmt, *FAST], line + "\n" + following)
    assert result.exit_code == 0
    out = result.stdout.split()
    assert out[0] == "NA" and "NA" not in out[1:] and len(out) == 31
    (warning,) = warnings(result.stderr)
    assert "features the model may have (--max-size)" in warning and len(warning) < 300


def test_7_max_size_bounds_the_model_and_can_be_raised():
    wide = " ".join(["1.5"] * 300) + "\n"
    assert invoke(["label", "--warm-up", "3"], wide * 3).stdout.split() == ["NA"] * 3  # 2 x 300 x 300 > 100,000
    result = invoke(["label", "--warm-up", "3", "--covariance-type", "diag"], wide * 3)
    assert result.stdout.split() == ["0"] * 3  # 2 x 300 numbers: within the default
    assert invoke(["label", "--warm-up", "3", "--max-size", "200000"], wide).stdout.split() == ["0"]


@pytest.mark.parametrize("args, message", [
    (["-k", "100000", "--warm-up", "500"], "warm_up must be None or an integer above n_components (100000)"),
    (["-k", "300000", "--warm-up", "300001"], "make a model of 300000 numbers, more than the limit of 100000"),
])
def test_7_too_many_components_is_a_usage_error_before_reading(args, message):
    result = CliRunner().invoke(cli, ["label", *args], input="1\n")
    assert result.exit_code == 2 and message in result.stderr and result.stdout == ""


def test_7_a_second_signal_during_a_model_update_is_obeyed_at_once():
    guard = labeler._SignalGuard()
    with guard:
        guard._handler(signal.SIGTERM, None)  # the first waits for the update to end
        assert guard.pending == signal.SIGTERM
        with pytest.raises(labeler._Interrupted) as stop:
            guard._handler(signal.SIGTERM, None)
    assert stop.value.forced
    with pytest.raises(labeler._Interrupted) as stop:
        guard.poll()
    assert not stop.value.forced


# ------------------------------------------------------------------ 8. quoting


@pytest.mark.parametrize("fmt, line", [
    ("text", "x" * 1_000_000),
    ("text", "1.5 " + "y" * 1_000_000),
    ("jsonl", json.dumps({"x": "z" * 1_000_000})),
    ("jsonl", json.dumps({"x": 1.0, "w" * 1_000_000: 2.0})),
    ("text", "\xe9" * 500_000),
])
@pytest.mark.parametrize("batch", ["1", "64"])
def test_8_a_huge_bad_line_gives_a_short_warning(fmt, line, batch):
    good = values_text(30) if fmt == "text" else "".join(json.dumps({"x": float(v)}) + "\n"
                                                          for v in values_text(30).split())
    result = invoke(["label", "--format", fmt, *FAST, "--batch-size", batch], good + line + "\n")
    assert result.exit_code == 0 and result.stdout.split()[-1] == "NA"
    assert len(result.stderr) < 400


def test_8_library_messages_quote_briefly():
    model = OnlineGaussianMixture(warm_up=5)
    model.learn_one({"x": 1.0})
    with pytest.raises(ValueError) as error:
        model.learn_one({"x": "q" * 100_000})
    assert len(str(error.value)) < 200
    with pytest.raises(ValueError) as error:
        OnlineGaussianMixture(n_components="k" * 100_000)
    assert len(str(error.value)) < 200


# ------------------------------------------------------------------ 9. impossible state files


def _mutated(path, change):
    state = json.loads(path.read_text())
    change(state)
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("change, message", [
    (lambda s: s["stats"].update(s2=[[[-1.0, 0.0], [0.0, 1.0]]] * 2), "negative second moment"),
    (lambda s: s["stats"].update(s2=[[[0.0, 0.0], [0.0, 0.0]]] * 2), "positive semi-definite"),
    (lambda s: s["stats"].update(s2=[[[1.0, 5.0], [5.0, 1.0]]] * 2), "positive semi-definite"),
    (lambda s: s["stats"].update(s2=[[[1.0, 0.5], [0.0, 1.0]]] * 2), "not symmetric"),
    (lambda s: s["stats"].update(s0=[0.0, 0.0]), "positive total"),
    (lambda s: s["average"].update(s0=[0.0, 0.0]), "average.s0"),
    (lambda s: s.update(t=0), "t=0"),
    (lambda s: s["stats"].update(shift=[1e200, 0.0]), "stats.shift"),
    (lambda s: s["stats"].update(s1=[[1e200, 0.0], [0.0, 0.0]]), "stats.s1: means"),
    (lambda s: s["params"].update(reg_covar=float("inf")), "reg_covar"),
    (lambda s: s["params"].update(n_init=0), "n_init"),
])
def test_9_impossible_state_numbers_are_refused(saved, change, message):
    _mutated(saved, change)
    if "reg_covar" in message:  # JSON has no infinity: 1e999 is how a file spells it
        saved.write_text(saved.read_text().replace("Infinity", "1e999"))
    before = saved.read_bytes()
    with pytest.raises(StateFileError, match=message):
        OnlineGaussianMixture.load(saved)
    result = invoke(["label", "--state", str(saved)], "1,2\n")
    assert result.exit_code == 1 and result.stderr.startswith("online-em: error: cannot load the state:")
    assert saved.read_bytes() == before


@pytest.mark.parametrize("cov", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("d", [1, 3])
def test_9_every_state_the_model_writes_is_accepted(tmp_path, cov, d):
    rng = np.random.default_rng(d)
    model = OnlineGaussianMixture(n_components=3, covariance_type=cov, warm_up=40, average_after=100, seed=0)
    X = rng.normal(size=(600, d)) * [1e-4, 1e4, 1.0][:d] + rng.integers(0, 3, (600, 1)) * 5.0
    X[:100] = X[0]  # a constant stretch: zero variances the floor must let through
    for start in range(0, 600, 7):
        model.learn_many(X[start:start + 7])
    model.save(tmp_path / "m.json")
    assert OnlineGaussianMixture.load(tmp_path / "m.json").n_samples_seen == 600


# ------------------------------------------------------------------ 10. one rule for parameters and values


@pytest.mark.parametrize("params", [
    {"n_init": 0}, {"init_max_iter": -5}, {"average_after": 1.5}, {"n_components": True}, {"warm_up": 2.0},
    {"reg_covar": float("inf")}, {"reg_covar": "1"}, {"alpha": "0.7"}, {"alpha": float("nan")},
    {"covariance_prior": "strong"}, {"covariance_prior": -0.1}, {"covariance_prior": float("inf")},
    {"covariance_prior": np.array([0.1, 0.2])}, {"average_after": np.array([1, 2])},
])
def test_10_invalid_hyper_parameters_are_refused(params):
    name = next(iter(params))
    with pytest.raises(ValueError, match=name):
        OnlineGaussianMixture(**params)


@pytest.mark.parametrize("value", ["5", True, decimal.Decimal("5"), [1.0], np.bool_(True)])
def test_10_feature_values_follow_the_json_lines_rule(value):
    model = OnlineGaussianMixture(warm_up=3)
    model.learn_one({"x": 1.0})
    with pytest.raises(ValueError, match="real numbers"):
        model.learn_one({"x": value})
    with pytest.raises(ValueError, match="real numbers"):
        OnlineGaussianMixture(warm_up=3).learn_one({"x": value})  # a first point too
    assert model.n_samples_seen == 1


@pytest.mark.parametrize("line", [b'{"x": "3"}', b'{"x": true}', b'{"x": [1]}'])
def test_10_json_lines_refuse_the_same_values(line):
    from online_em.records import JsonParser

    with pytest.raises(RecordError, match="is not a number"):
        JsonParser().parse(line)


def test_10_none_and_null_are_missing_values_not_errors():
    """Issue 11 changed this rule: None (null in JSON lines) is a missing value; a point with no
    value observed is skipped (counted), a line with none is a bad line."""
    from online_em.records import JsonParser

    model = OnlineGaussianMixture(warm_up=3)
    model.learn_one({"x": 1.0})
    model.learn_one({"x": None})
    assert model.n_samples_seen == 1 and model.n_samples_skipped == 1
    with pytest.raises(RecordError, match="no value: 'x' is null"):
        JsonParser().parse(b'{"x": null}')


def test_10_real_numbers_of_any_type_are_accepted():
    model = OnlineGaussianMixture(warm_up=3, seed=0)
    for value in (1, 2.5, np.float32(3.0), np.int64(4), np.float64(5.0)):
        model.learn_one({"x": value})
    assert model.n_samples_seen == 5


def test_10_an_empty_point_or_batch_fixes_nothing_and_the_model_still_saves(tmp_path):
    model = OnlineGaussianMixture(warm_up=3, seed=0)
    model.learn_one({})  # nothing observed: skipped (issue 11), and no feature fixed
    model.learn_one({"x": None})
    assert model.n_samples_skipped == 2 and model.n_samples_seen == 0
    model.learn_many(np.array([]))
    model.learn_many(np.empty((0, 4)))
    assert model.feature_names_in_ == []
    model.save(tmp_path / "m.json")
    assert OnlineGaussianMixture.load(tmp_path / "m.json").feature_names_in_ == []
    model.learn_many(np.ones((5, 2)) + np.arange(5)[:, None])
    assert model.feature_names_in_ == [0, 1]


def test_10_duplicate_dataframe_columns_are_a_clear_error():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(np.ones((4, 2)), columns=["a", "a"])
    fresh, started = OnlineGaussianMixture(), OnlineGaussianMixture()
    started.learn_many(pd.DataFrame({"a": [1.0]}))
    for model in (fresh, started):
        with pytest.raises(ValueError, match="'a' appears more than once"):
            model.learn_many(frame)


def test_10_the_cli_and_the_library_share_the_value_limit():
    from online_em import model as model_module

    assert validation.MAX_ABS_VALUE == model_module.MAX_ABS_VALUE


# ------------------------------------------------------------------ 11. text input


def test_11_a_thousands_separator_on_line_1_is_a_bad_line_not_two_features():
    result = invoke(["label", "--warm-up", "3"], "1,000\n2\n3\n4\n")
    assert result.stdout.split() == ["NA", "0", "0", "0"]
    assert "thousands separators" in result.stderr
    two = invoke(["label", "--warm-up", "3", "--delimiter", "comma"], "1,000\n2,5\n3,6\n")
    assert two.exit_code == 0 and "NA" not in two.stdout


@pytest.mark.parametrize("batch", ["1", "64"])
def test_11_tabs_split_as_cut_f_does(tmp_path, batch):
    rng = np.random.default_rng(0)
    rows = [f"id{i}\t\t{x:.3f}\t{'' if i % 2 else 'note'}" for i, x in enumerate(rng.normal(size=80))]
    data = "\n".join(rows) + "\n"
    result = invoke(["label", "--columns", "3", *FAST, "--batch-size", batch, "--echo"], data)
    assert result.exit_code == 0 and "NA" not in result.stdout
    if shutil.which("cut"):
        cut = subprocess.run(["cut", "-f", "3"], input=data.encode(), capture_output=True).stdout.decode().split()
    else:
        cut = [row.split("\t")[2] for row in rows]
    picked = invoke(["label", *FAST, "--batch-size", batch], "\n".join(cut) + "\n")
    assert result.stdout.splitlines() == [f"{row}\t{k}" for row, k in zip(rows, picked.stdout.split())]
    empty = invoke(["label", "--columns", "2", "--warm-up", "3"], "a\t\t1\n")
    assert "field 2 is empty" in empty.stderr


def test_11_an_exact_delimiter_keeps_empty_leading_fields():
    result = invoke(["label", "--delimiter", "tab", "--columns", "3", "--warm-up", "3", "--echo"], "\t\t5\n\t\t6\n")
    assert result.stdout.splitlines() == ["\t\t5\t0", "\t\t6\t0"]
    one = invoke(["label", "--delimiter", "tab", "--warm-up", "3"], "\t5\n5\n")  # two fields, the first empty
    assert one.stdout.split() == ["0", "NA"]  # the first empty field is a missing value (issue 11)
    assert "line 2: expected 2 field(s), got 1" in one.stderr


@pytest.mark.parametrize("batch", ["1", "64"])
@pytest.mark.parametrize("data", [
    b"\xef\xbb\xbf1.5\n2.5\n3.5\n",  # a byte-order mark
    b"1.5\r2.5\r3.5\r",  # old Mac line ends
    b"1.5\r\n2.5\r\n3.5",  # Windows, no final line end
    b"\xef\xbb\xbf1.5\r2.5\n3.5\r\n",  # all of it
])
def test_11_a_byte_order_mark_and_any_line_end_give_the_same_three_records(data, batch):
    args = ["label", "--warm-up", "3", "--seed", "0", "--batch-size", batch, "--echo"]
    plain = invoke(args, b"1.5\n2.5\n3.5\n").stdout.splitlines()
    result = invoke(args, data)
    assert result.exit_code == 0 and result.stderr == ""
    assert result.stdout.splitlines() == plain and [line.split("\t")[0] for line in plain] == ["1.5", "2.5", "3.5"]


def test_11_parser_rules():
    assert NumericParser().parse(b"1\t2") == [1.0, 2.0]
    assert NumericParser(delimiter=" ").parse(b"1 \t 2") == [1.0, 2.0]
    with pytest.raises(RecordError, match="not a number"):
        NumericParser(delimiter=" ").parse(b"1,000")


# ------------------------------------------------------------------ 12. small things


@pytest.mark.parametrize("args, message", [
    (["--state", ""], "the file name is empty"),
    (["--checkpoint-every", "10"], "--checkpoint-every saves the state, but it needs --state FILE"),
])
def test_12_options_that_would_be_silently_ignored_are_usage_errors(args, message):
    result = CliRunner().invoke(cli, ["label", *args], input="1\n")
    assert result.exit_code == 2 and message in result.stderr


@posix
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_12_pythonunbuffered_does_not_make_a_write_a_line(tmp_path):
    data = tmp_path / "in.txt"
    data.write_text(values_text(5000))
    trace = tmp_path / "trace"
    with open(data, "rb") as stdin:
        proc = subprocess.run(["strace", "-f", "-e", "trace=write", "-o", str(trace), *CMD, "label", *FAST],
                              stdin=stdin, capture_output=True, env={**ENV, "PYTHONUNBUFFERED": "1"}, timeout=120)
    if proc.returncode != 0 and not trace.exists():
        pytest.skip("strace cannot trace here")
    assert proc.returncode == 0 and len(proc.stdout.split()) == 5000
    writes = [line for line in trace.read_text().splitlines() if re.search(r"\bwrite\(1,", line)]
    assert 0 < len(writes) < 50  # a file in: whole buffers out, not 5,000 writes


@pytest.mark.parametrize("args", [["--help"], ["label", "--help"], ["label", "--state", ""]])
def test_12_help_and_usage_errors_import_neither_numpy_nor_river(args):
    code = ("import sys\nfrom online_em.cli import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'river', 'online_em.model') if m in sys.modules), file=sys.stderr)"
            % (args,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.stderr.splitlines()[-1] == "[]"


def test_12_the_cli_shows_the_models_defaults():
    from online_em.cli import _DEFAULTS

    model = OnlineGaussianMixture()
    assert _DEFAULTS == {name: getattr(model, name) for name in _DEFAULTS}
    assert validation.DEFAULT_MAX_SIZE >= validation.model_size(_DEFAULTS["n_components"], 100, "full")
