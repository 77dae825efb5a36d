"""The `online-em` command through click's CliRunner: every command and option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from online_em import OnlineGaussianMixture, labeler as cli_module, persistence
from online_em.cli import cli, demo_stream


def run(args, input=None):
    return CliRunner().invoke(cli, args, input=input, catch_exceptions=False)


def numbers(n=600, seed=0, d=1):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    values = np.where(labels[:, None] == 0, 0.0, 10.0) + rng.normal(size=(n, d))
    return values, labels


def as_text(values, sep=" "):
    return "".join(sep.join(repr(float(v)) for v in row) + "\n" for row in values)


def accuracy(predicted, truth):
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    return max((predicted == truth).mean(), (predicted != truth).mean())


FAST = ["--warm-up", "50", "--seed", "1"]


# ------------------------------------------------------------------ label


def test_label_writes_one_label_per_line_and_finds_the_clusters():
    values, truth = numbers()
    result = run(["label", *FAST], as_text(values))
    assert result.exit_code == 0, result.output
    labels = [int(v) for v in result.stdout.split("\n")[:-1]]
    assert len(labels) == len(values)
    assert accuracy(labels[100:], truth[100:]) > 0.97
    assert result.stderr == ""


def test_demo_stream_is_labelled_at_least_90_percent_right():
    values, truth = demo_stream()
    text = run(["demo"]).stdout
    assert np.allclose(np.array(text.split(), dtype=float), values, atol=1e-6)
    labels = np.array(run(["label"], text).stdout.split(), dtype=int)
    assert len(labels) == 12_000
    assert accuracy(labels, truth) >= 0.9


@pytest.mark.parametrize("sep", [",", " ", "\t", ", "])
def test_several_fields_by_comma_or_whitespace(sep):
    values, truth = numbers(400, d=2)
    result = run(["label", *FAST], as_text(values, sep))
    labels = np.array(result.stdout.split(), dtype=int)
    assert result.exit_code == 0 and len(labels) == 400 and result.stderr == ""
    assert accuracy(labels[100:], truth[100:]) > 0.97


def test_columns_picks_fields_and_gives_the_same_model_as_the_fields_alone(tmp_path):
    values, _ = numbers(300, d=2)
    wide = "".join(f"id{i},{float(a)!r},junk,{float(b)!r}\n" for i, (a, b) in enumerate(values))
    picked = run(["label", *FAST, "--columns", "2,4", "--state", str(tmp_path / "a.json")], wide)
    plain = run(["label", *FAST, "--state", str(tmp_path / "b.json")], as_text(values, ","))
    assert picked.exit_code == 0, picked.output
    assert picked.stdout == plain.stdout
    a, b = (OnlineGaussianMixture.load(tmp_path / n) for n in ("a.json", "b.json"))
    assert np.array_equal(a.means_, b.means_)


def test_jsonl_format_with_and_without_columns():
    values, truth = numbers(300, d=2)
    lines = "".join(json.dumps({"y": b, "x": a, "note": "n"}) + "\n" for a, b in values)
    result = run(["label", *FAST, "--format", "jsonl", "--columns", "x,y"], lines)
    labels = np.array(result.stdout.split(), dtype=int)
    assert result.exit_code == 0 and len(labels) == 300
    assert accuracy(labels[100:], truth[100:]) > 0.97
    # without --columns, the first object's keys are the features: "note" is not a number
    result = run(["label", *FAST, "--format", "jsonl"], lines[:2000])
    assert "value of 'note' is not a number" in result.stderr


def test_output_proba_score_json_and_echo_agree_with_the_model():
    values, _ = numbers(200)
    text = as_text(values)
    labels = run(["label", *FAST], text).stdout.split()
    proba = [list(map(float, line.split(","))) for line in run(["label", *FAST, "--output", "proba"], text).stdout.split()]
    scores = list(map(float, run(["label", *FAST, "--output", "score"], text).stdout.split()))
    records = [json.loads(line) for line in run(["label", *FAST, "--output", "json"], text).stdout.splitlines()]
    assert len(proba) == len(scores) == len(records) == 200
    assert all(abs(sum(p) - 1) < 1e-5 for p in proba)
    assert [r["label"] for r in records] == [int(k) for k in labels]
    assert np.allclose([r["proba"] for r in records], proba, atol=1e-6)
    assert np.allclose([r["score"] for r in records], scores, atol=1e-6)
    assert [int(np.argmax(p)) for p in proba[60:]] == [int(k) for k in labels[60:]]

    echoed = run(["label", *FAST, "--echo"], text).stdout.splitlines()
    assert [line.split("\t") for line in echoed] == [[v, k] for v, k in zip(text.splitlines(), labels)]


def test_predictions_come_before_learning():
    """The first record is labelled by the empty model (0), and the model then holds it."""
    result = run(["label", "--warm-up", "3", "--output", "json"], "5\n")
    record = json.loads(result.stdout)
    assert record["label"] == 0 and record["proba"] == [0.5, 0.5]


def test_no_learn_labels_with_the_frozen_model(tmp_path):
    state = tmp_path / "m.json"
    values, _ = numbers(400)
    run(["label", *FAST, "--state", str(state)], as_text(values))
    before = state.read_bytes()
    model = OnlineGaussianMixture.load(state)
    probe, _ = numbers(50, seed=3)
    result = run(["label", "--no-learn", "--state", str(state)], as_text(probe))
    assert result.exit_code == 0
    assert [int(v) for v in result.stdout.split()] == model.predict_many(probe).tolist()
    assert state.read_bytes() == before
    batch = run(["label", "--no-learn", "--batch-size", "16", "--state", str(state)], as_text(probe))
    assert batch.stdout == result.stdout


def test_no_learn_without_a_saved_model_is_a_usage_error(tmp_path):
    for args in (["label", "--no-learn"], ["label", "--no-learn", "--state", str(tmp_path / "none.json")]):
        result = CliRunner().invoke(cli, args, input="1\n")
        assert result.exit_code == 2 and "--no-learn needs --state" in result.stderr


def test_batch_size_gives_vectorised_blocks_with_the_same_outputs_count_and_good_labels():
    values, truth = numbers(1000)
    result = run(["label", *FAST, "--batch-size", "64"], as_text(values))
    labels = np.array(result.stdout.split(), dtype=int)
    assert result.exit_code == 0 and len(labels) == 1000
    assert accuracy(labels[128:], truth[128:]) > 0.97
    # blocks are predicted by the model before the block, then learned with learn_many; during
    # the warm-up a block is learned first and labelled by the batch fit that includes it
    model = OnlineGaussianMixture(warm_up=50, seed=1)
    expected = []
    for start in range(0, 1000, 64):
        block = values[start:start + 64]
        if not model.is_initialised:
            model.learn_many(block)
            expected += model.predict_many(block).tolist()
        else:
            expected += model.predict_many(block).tolist()
            model.learn_many(block)
    assert labels.tolist() == expected


def test_batch_mode_outputs_for_every_format_and_echo():
    values, _ = numbers(300)
    text = as_text(values)
    for output in ("label", "proba", "score", "json"):
        one = run(["label", *FAST, "--output", output, "--batch-size", "1000", "--no-learn"][:-1], text)
        echoed = run(["label", *FAST, "--output", output, "--batch-size", "1000", "--echo"], text)
        assert len(one.stdout.splitlines()) == 300
        assert [line.split("\t", 1)[1] for line in echoed.stdout.splitlines()] == one.stdout.splitlines()


# ------------------------------------------------------------------ state


@pytest.mark.parametrize("batch", ["1", "50"])
def test_two_runs_with_state_end_with_the_parameters_of_one_run(tmp_path, batch):
    values, _ = numbers(900)
    text = as_text(values)
    one = run(["label", *FAST, "--batch-size", batch, "--state", str(tmp_path / "one.json")], text)
    lines = text.splitlines(keepends=True)
    first = run(["label", *FAST, "--batch-size", batch, "--state", str(tmp_path / "two.json")], "".join(lines[:400]))
    second = run(["label", "--batch-size", batch, "--state", str(tmp_path / "two.json")], "".join(lines[400:]))
    assert first.stdout + second.stdout == one.stdout
    a, b = (OnlineGaussianMixture.load(tmp_path / n) for n in ("one.json", "two.json"))
    assert np.array_equal(a.means_, b.means_) and np.array_equal(a.covariances_, b.covariances_)
    assert np.array_equal(a.weights_, b.weights_) and a.n_samples_seen == b.n_samples_seen == 900


def test_model_options_that_contradict_the_state_are_an_error(tmp_path):
    state = tmp_path / "m.json"
    run(["label", "-k", "3", "--warm-up", "5", "--state", str(state)], "1\n2\n")
    before = state.read_bytes()
    for option in (["-k", "2"], ["--covariance-type", "diag"], ["--alpha", "0.9"], ["--warm-up", "9"],
                   ["--seed", "7"]):
        result = CliRunner().invoke(cli, ["label", *option, "--state", str(state)], input="1\n")
        assert result.exit_code == 2, option
        assert "contradicts the state file" in result.stderr
    assert state.read_bytes() == before
    agreeing = run(["label", "-k", "3", "--warm-up", "5", "--state", str(state)], "1\n")
    assert agreeing.exit_code == 0 and OnlineGaussianMixture.load(state).n_samples_seen == 3


def test_state_of_the_wrong_format_is_a_usage_error(tmp_path):
    state = tmp_path / "m.json"
    run(["label", "--warm-up", "5", "--state", str(state), "--format", "jsonl"], '{"x": 1}\n')
    result = CliRunner().invoke(cli, ["label", "--state", str(state)], input="1\n")
    assert result.exit_code == 2 and "use --format jsonl" in result.stderr
    result = CliRunner().invoke(cli, ["label", "--state", str(state), "--format", "jsonl", "--columns", "y"],
                                input="{}\n")
    assert result.exit_code == 2 and "--columns picks" in result.stderr


@pytest.mark.parametrize("damage", ["truncate", "garbage", "version"])
def test_a_damaged_state_file_is_a_clear_error_and_left_as_it_was(tmp_path, damage):
    state = tmp_path / "m.json"
    run(["label", *FAST, "--state", str(state)], as_text(numbers(100)[0]))
    data = state.read_bytes()
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = b"\x00\x01 not json"
    else:
        data = data.replace(f'"version": {persistence.VERSION}'.encode(), b'"version": 99')
    state.write_bytes(data)
    for command in (["label", "--state", str(state)], ["fit", "-", "--state", str(state)],
                    ["show", "--state", str(state)]):
        result = CliRunner().invoke(cli, command, input="1\n")
        assert result.exit_code == 1, command
        assert result.stderr.startswith("online-em: error: cannot load the state: ")
        assert str(state) in result.stderr and "Traceback" not in result.output
        assert state.read_bytes() == data


def test_checkpoints_save_every_n_lines_and_at_the_end(tmp_path, monkeypatch):
    seen = []
    original = OnlineGaussianMixture.save
    monkeypatch.setattr(OnlineGaussianMixture, "save", lambda self, path: (seen.append(self.n_samples_seen),
                                                                            original(self, path)))
    values, _ = numbers(250)
    run(["label", *FAST, "--checkpoint-every", "100", "--state", str(tmp_path / "m.json")], as_text(values))
    assert seen == [100, 200, 250]
    seen.clear()
    run(["label", *FAST, "--checkpoint-every", "100", "--batch-size", "30",
         "--state", str(tmp_path / "b.json")], as_text(values))
    assert seen == [120, 210, 250]  # after the block that crosses each multiple of 100


# ------------------------------------------------------------------ bad input


def mixed_lines(n_valid=1000, seed=0, fmt="text"):
    """n_valid good lines and 50 bad ones of every kind, at random places; returns bytes and the
    1-based line numbers of the bad ones."""
    rng = np.random.default_rng(seed)
    values = np.where(rng.integers(0, 2, n_valid) == 0, 0.0, 10.0) + rng.normal(size=n_valid)
    if fmt == "text":
        good = [repr(float(v)).encode() for v in values]
        kinds = [b"abc", b"nan", b"inf", b"-Infinity", b"1 2", b"3,4", b"", b"   ", b"\xff\xfe1",
                 b'{"x": 1', b"1e999", b"1,", b"0x10", b"--5"]
    else:
        good = [json.dumps({"x": float(v)}).encode() for v in values]
        kinds = [b'{"x": "abc"}', b'{"x": NaN}', b'{"x": Infinity}', b'{"x": 1, "y": 2}', b'{"y": 2}', b"",
                 b'{"x": 1', b"[1]", b'{"x": \xff}', b'{"x": true}', b'{"x": 1e999}', b"not json"]
    bad = [kinds[i % len(kinds)] for i in range(50)]
    positions = sorted(rng.choice(n_valid + 50, 50, replace=False).tolist())
    lines, good_iter, bad_iter = [], iter(good), iter(bad)
    for i in range(n_valid + 50):
        lines.append(next(bad_iter) if i in positions else next(good_iter))
    return b"\n".join(lines) + b"\n", [p + 1 for p in positions]


def warned_lines(stderr):
    import re

    return [int(m) for m in re.findall(r"^online-em: warning: line (\d+): ", stderr, re.M)]


@pytest.mark.parametrize("fmt, batch", [("text", "1"), ("text", "100"), ("jsonl", "1"), ("jsonl", "100")])
def test_bad_lines_give_na_and_a_warning_naming_the_line(fmt, batch):
    data, bad = mixed_lines(fmt=fmt)
    args = ["label", *FAST, "--format", fmt, "--batch-size", batch]
    result = CliRunner().invoke(cli, args, input=data)
    assert result.exit_code == 0
    out = result.stdout.split("\n")[:-1]
    assert len(out) == 1050
    assert [i + 1 for i, v in enumerate(out) if v == "NA"] == bad
    assert sum(v in ("0", "1") for v in out) == 1000
    assert warned_lines(result.stderr) == bad
    assert len(result.stderr.splitlines()) == 50


def test_warnings_quote_the_offending_text():
    result = run(["label"], b"1\n2\nhello\n\xffoops\n1 2\n")
    assert "warning: line 3: field 1 is not a number ('hello'): 'hello'\n" in result.stderr
    assert "warning: line 4: invalid UTF-8 (byte 0xff at position 1): b'\\xffoops'\n" in result.stderr
    assert "warning: line 5: expected 1 field(s), got 2: '1 2'\n" in result.stderr
    assert result.stdout.split() == ["0", "0", "NA", "NA", "NA"]


def test_json_output_writes_null_for_bad_lines_and_echo_keeps_the_line():
    result = run(["label", "--output", "json", "--echo"], "1\nx\n2\n")
    lines = result.stdout.splitlines()
    assert lines[1] == "x\tnull" and lines[0].startswith("1\t{")


def test_on_error_skip_drops_bad_lines_and_says_how_many_at_the_end():
    data, bad = mixed_lines()
    for batch in ("1", "100"):
        result = CliRunner().invoke(cli, ["label", *FAST, "--on-error", "skip", "--batch-size", batch], input=data)
        assert result.exit_code == 0
        assert sorted(set(result.stdout.split())) == ["0", "1"] and len(result.stdout.split()) == 1000
        assert result.stderr == "online-em: skipped 50 bad line(s)\n"


@pytest.mark.parametrize("batch", ["1", "7"])
def test_on_error_fail_writes_earlier_labels_saves_state_and_exits_1(tmp_path, batch):
    state = tmp_path / "m.json"
    values, _ = numbers(30)
    lines = as_text(values).splitlines(keepends=True)
    data = "".join(lines[:20]) + "oops\n" + "".join(lines[20:])
    result = CliRunner().invoke(
        cli, ["label", "--warm-up", "5", "--on-error", "fail", "--batch-size", batch, "--state", str(state)], input=data)
    assert result.exit_code == 1
    assert len(result.stdout.split()) == 20
    assert result.stderr == "online-em: error: line 21: field 1 is not a number ('oops'): 'oops'\n"
    assert OnlineGaussianMixture.load(state).n_samples_seen == 20


EDGES = (b"1.5\r\n2\r\n \t3 \n+4\n-0\n.5\n5.\n1_0\n0000000000000000012.5\n1e200\n-1e3\n"
         b"12345678901234567890\n" + b"7" * 100 + b"\n9.75")  # and no b"\n" at the end


@pytest.mark.parametrize("batch", ["1", "3", "1024"])
@pytest.mark.parametrize("echo", [[], ["--echo"]])
def test_reads_of_any_size_give_the_same_output_as_one_read(monkeypatch, batch, echo):
    mixed, _ = mixed_lines(200, seed=3)
    data = mixed + EDGES
    args = ["label", *FAST, "--batch-size", batch, *echo]
    whole = CliRunner().invoke(cli, args, input=data)
    assert whole.exit_code == 0
    assert len(whole.stdout.splitlines()) == data.count(b"\n") + 1
    for size in (1, 5, 64):  # lines and blocks split across reads, the line numbers carried on
        monkeypatch.setattr(cli_module, "_READ_SIZE", size)
        result = CliRunner().invoke(cli, args, input=data)
        assert (result.exit_code, result.stdout, result.stderr) == (0, whole.stdout, whole.stderr)


def test_lines_are_read_as_float_reads_them_and_the_model_range_is_checked():
    lines = EDGES.split(b"\n")
    for batch in ("1", "1024"):
        result = run(["label", *FAST, "--echo", "--batch-size", batch], EDGES)
        echoed, labels = zip(*(line.rsplit("\t", 1) for line in result.stdout.splitlines()))
        assert list(echoed) == [line.rstrip(b"\r").decode() for line in lines]
        assert [i + 1 for i, label in enumerate(labels) if label == "NA"] == [10]  # 1e200 only
        assert "line 10: field 1 is beyond ±1e+152 ('1e200')" in result.stderr


def test_several_files_are_read_in_order_and_warnings_name_the_file(tmp_path):
    (tmp_path / "a.txt").write_text("1\n2\n")
    (tmp_path / "b.txt").write_text("3\nbad\n4\n")
    # seeded: the warm-up fits its first few points, and an unseeded start could label them either way
    result = run(["label", "--seed", "0", "--echo", str(tmp_path / "a.txt"), "-", str(tmp_path / "b.txt")], "9\n")
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == ["1", "2", "9", "3", "bad", "4"]
    assert [line.split("\t")[1] for line in result.stdout.splitlines()] == ["0", "0", "0", "0", "NA", "0"]
    assert f"warning: {tmp_path / 'b.txt'}, line 2: " in result.stderr


def test_usage_errors_exit_2_with_clicks_message(tmp_path):
    for args in (["label", "--batch-size", "0"], ["label", "--alpha", "0.3"], ["label", "-k", "0"],
                 ["label", "--columns", "0"], ["label", "--columns", "a"], ["label", "--output", "xml"],
                 ["label", "--on-error", "ignore"], ["label", str(tmp_path / "missing.txt")], ["label", "--nope"],
                 ["fit", "-"], ["show"], ["nope"]):
        result = CliRunner().invoke(cli, args, input="1\n")
        assert result.exit_code == 2, args
        assert "Usage:" in result.stderr and "Error:" in result.stderr, args


# ------------------------------------------------------------------ fit, show, demo


def test_fit_learns_silently_the_model_label_would(tmp_path):
    values, _ = numbers(500, d=2)
    path = tmp_path / "data.csv"
    path.write_text(as_text(values, ","))
    fitted = run(["fit", str(path), *FAST, "--state", str(tmp_path / "f.json")])
    assert fitted.exit_code == 0 and fitted.stdout == "" and fitted.stderr == ""
    run(["label", str(path), *FAST, "--state", str(tmp_path / "l.json")])
    a, b = (OnlineGaussianMixture.load(tmp_path / n) for n in ("f.json", "l.json"))
    assert np.array_equal(a.means_, b.means_) and a.n_samples_seen == 500
    # and it resumes: a second fit continues from the saved model
    run(["fit", str(path), "--state", str(tmp_path / "f.json")])
    assert OnlineGaussianMixture.load(tmp_path / "f.json").n_samples_seen == 1000


def test_fit_shows_a_progress_bar_when_asked_and_only_for_files_on_a_terminal(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text(as_text(numbers(300)[0]))
    result = run(["fit", str(path), *FAST, "--batch-size", "64", "--progress", "--state", str(tmp_path / "m.json")])
    assert "learning" in result.stderr and result.stdout == ""

    class Tty:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    assert cli_module._want_progress([str(path)], Tty(True))
    assert not cli_module._want_progress([str(path)], Tty(False))
    assert not cli_module._want_progress([str(path), "-"], Tty(True))
    assert not cli_module._want_progress([], Tty(True))


def test_show_prints_a_table_and_json(tmp_path):
    state = tmp_path / "m.json"
    text = run(["demo", "--n", "3000"]).stdout
    run(["label", "--state", str(state), "--seed", "0"], text)
    model = OnlineGaussianMixture.load(state)
    table = run(["show", "--state", str(state)])
    assert table.exit_code == 0
    lines = table.stdout.splitlines()
    assert "points learned: 3000" in lines[1]
    assert lines[2].split() == ["component", "weight", "mean", "std"]
    rows = [line.split() for line in lines[3:5]]
    assert [float(r[1]) for r in rows] == pytest.approx(model.weights_.tolist(), abs=1e-4)
    assert sorted(round(float(r[2])) for r in rows) == [20, 40]
    assert sorted(round(float(r[3])) for r in rows) == [5, 5]
    data = json.loads(run(["show", "--state", str(state), "--json"]).stdout)
    assert data["weights"] == model.weights_.tolist() and data["n_samples_seen"] == 3000
    assert data["covariances"] == model.covariances_.tolist()


def test_show_lists_the_active_components_and_the_moves_made(tmp_path):
    """The tutorial in its own order with room for 5: one birth, and the two live components."""
    state = tmp_path / "m.json"
    text = run(["demo", "--no-shuffle", "--seed", "0"]).stdout
    run(["label", "--state", str(state), "--seed", "0", "--components", "5"], text)
    lines = run(["show", "--state", str(state)]).stdout.splitlines()
    assert any(line.split() == ["active", "components:", "2", "of", "at", "most", "5", "births:", "1", "merges:", "0",
                                "prunes:", "0", "splits:", "0"] for line in lines), lines


def test_show_prints_covariances_of_several_features_and_handles_new_models(tmp_path):
    state = tmp_path / "m.json"
    run(["label", *FAST, "--state", str(state)], as_text(numbers(200, d=2)[0]))
    lines = run(["show", "--state", str(state)]).stdout
    assert "mean[0]" in lines and "std[1]" in lines and "covariance of component 1:" in lines
    empty = tmp_path / "e.json"
    OnlineGaussianMixture(warm_up=10).save(empty)
    assert "has not seen any data" in run(["show", "--state", str(empty)]).stdout
    run(["label", "--state", str(empty)], "1\n2\n")
    assert "warming up: 2 of 10" in run(["show", "--state", str(empty)]).stdout


def test_demo_writes_the_tutorial_stream():
    text = run(["demo"]).stdout.split()
    assert len(text) == 12_000
    ordered = np.array(run(["demo", "--no-shuffle"]).stdout.split(), dtype=float)
    assert abs(ordered[:4000].mean() - 20) < 0.5 and abs(ordered[4000:].mean() - 40) < 0.5
    assert abs(ordered[:4000].std() - 5) < 0.3
    assert run(["demo", "--seed", "3", "--n", "10"]).stdout == run(["demo", "--seed", "3", "--n", "10"]).stdout
    assert run(["demo", "--seed", "3", "--n", "10"]).stdout != run(["demo", "--seed", "4", "--n", "10"]).stdout
    truth = [line.split(",") for line in run(["demo", "--n", "30", "--truth", "--no-shuffle"]).stdout.split()]
    assert [int(k) for _, k in truth] == [0] * 10 + [1] * 20


def test_version_and_help():
    assert run(["--version"]).stdout.startswith("online-em, version ")
    assert "label" in run(["--help"]).stdout and "--batch-size" in run(["label", "--help"]).stdout
