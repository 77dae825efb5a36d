"""The labeler behind ``online-em label`` and ``fit``: read records, predict, learn, write.

`run` is one command's whole life: it checks that the state can be written and locks it
(`online_em.locking`), loads or builds the model, reads every source through
`online_em.streams.Reader`, writes through the command's own buffered stdout, and saves the
state at the end, at checkpoints, and on SIGINT, SIGTERM or SIGHUP. A signal is never acted on in
the middle of a model update: it waits for the update to end (a second one does not wait, and
then the state is not saved, since the model may be half updated; the file keeps its last save).
Imported only when a command runs, so that ``online-em --help`` needs neither numpy nor River.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import typing

import click
import numpy as np

from . import validation
from .anomaly import GaussianMixtureScorer
from .cli import MODEL_OPTIONS, PROG, explicit_option, load_state, report_error, report_warning, silence_stdout
from .model import OnlineGaussianMixture
from .records import DELIMITERS, RecordError, make_parser, parse_columns
from .streams import Reader, WriteError, open_stdout
from .validation import MAX_ABS_VALUE

__all__ = ["run"]

_NA = b"NA"
_DIGIT_LINES = np.frombuffer(b"".join(b"%d\n" % k for k in range(10)), dtype=np.uint16)  # b"0\n"...b"9\n"
_JSON_NA = b"null"


# ---------------------------------------------------------------------- control flow


_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class _Interrupted(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived; raised where the model is consistent, unless `forced`
    (a second signal during a model update: the model must not be saved)."""

    def __init__(self, signum: int, forced: bool = False):
        super().__init__(signum)
        self.signum = signum
        self.forced = forced


class _Failed(Exception):
    """A bad record with ``--on-error fail``."""


class _SaveFailed(Exception):
    """The state could not be saved (the message is one line); the file is as it was."""


class _SignalGuard:
    """Turns SIGINT, SIGTERM and SIGHUP into `_Interrupted`, but never in the middle of a model
    update: a signal that arrives inside ``with guard:`` waits until `poll`, after the output is
    written. A second signal while one waits is obeyed at once (`_Interrupted.forced`)."""

    def __init__(self):
        self.critical = False
        self.pending: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if not self.critical:
            raise _Interrupted(signum)
        if self.pending is not None:
            raise _Interrupted(signum, forced=True)
        self.pending = signum

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in _SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handler)

    def ignore(self) -> None:
        """Ignore the signals until `restore` (while the state is saved after a stop)."""
        for signum in self._previous:
            signal.signal(signum, signal.SIG_IGN)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __enter__(self):
        self.critical = True
        return self

    def __exit__(self, kind, value, traceback):
        self.critical = False
        return False

    def poll(self) -> None:
        """Raise a signal that arrived during a model update (call it once its output is written)."""
        if self.pending is not None:
            signum, self.pending = self.pending, None
            raise _Interrupted(signum)


def _binary(stream):
    """The byte stream under a text stream (sys.stdin, sys.stdout)."""
    return getattr(stream, "buffer", stream)


def _lock_state(state: str, wait: bool):
    """Check that the state file can be written and lock it for the run (exit 1 if not)."""
    from .locking import StateLock, StateLocked
    from .persistence import check_writable

    try:
        check_writable(state)
        return StateLock(state, wait=wait).acquire()
    except StateLocked as error:
        report_error(str(error))
    except OSError as error:
        report_error(f"cannot write the state file {state}: {error.strerror or error}")
    raise SystemExit(1)


def _check_size(ctx: click.Context, model: OnlineGaussianMixture, options: dict) -> int:
    """Usage error for a model beyond --max-size (or with more components than warm-up points);
    the most features a first record may bring."""
    K, cov, limit = model.n_components, model.covariance_type, options["max_size"]
    if not model.n_features_in_ and model.warm_up is not None and K >= model.warm_up:
        raise click.UsageError(f"-k {K} is not below --warm-up {model.warm_up}: the warm-up needs more points "
                               "than components", ctx)
    try:
        validation.check_model_size(K, max(1, model.n_features_in_), cov, limit)
    except ValueError as error:
        raise click.UsageError(f"{error} (--max-size)", ctx) from None
    return validation.max_features(K, cov, limit)


def _build_model(ctx: click.Context, options: dict, learn: bool) -> OnlineGaussianMixture:
    """The model: loaded from --state if the file exists (explicit model options must agree with
    it), else new from the model options."""
    state = options.get("state")
    if state and os.path.exists(state):
        model = load_state(state)
        saved = model._get_params()
        for name, param in MODEL_OPTIONS.items():
            if explicit_option(ctx, name) and options[name] != saved[param]:
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(
                    f"{flag} {options[name]} contradicts the state file {state} ({param}={saved[param]!r})", ctx
                )
        return model
    if not learn:
        raise click.UsageError("--no-learn needs --state FILE with a saved model", ctx)
    try:
        return OnlineGaussianMixture(**{param: options[name] for name, param in MODEL_OPTIONS.items()})
    except ValueError as error:  # options that click's types let through but the model refuses
        raise click.UsageError(str(error), ctx) from None


def _make_parser(ctx: click.Context, options: dict, model: OnlineGaussianMixture, max_features: int):
    try:
        columns = parse_columns(options["columns"], options["fmt"])
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param_hint="'--columns'") from None
    delimiter = DELIMITERS[options["delimiter"]] if options.get("delimiter") else None
    if delimiter is not None and options["fmt"] != "text":
        raise click.UsageError("--delimiter is for --format text", ctx)
    try:
        return make_parser(options["fmt"], columns, model.feature_names_in_ or None, delimiter, max_features)
    except ValueError as error:
        raise click.UsageError(f"{error} (state file {options.get('state')})", ctx) from None


# ---------------------------------------------------------------------- the labeler


def _fmt_proba(row) -> bytes:
    return ",".join(["%.6g" % p for p in row]).encode()


def _fmt_score(value: float) -> bytes:
    return b"%.6f" % value


def _fmt_json(label: int, proba, score: float, anomaly: float) -> bytes:
    import json  # only --output json and show --json need it: not imported at start-up

    return json.dumps({"label": int(label), "proba": list(proba), "score": float(score),
                       "anomaly": float(anomaly)}).encode()


class _Labeler:
    """Reads sources, parses records, predicts then learns, writes one line per record."""

    def __init__(self, model, parser, *, output: str | None, echo: bool, learn: bool, on_error: str,
                 batch_size: int, state: str | None, checkpoint_every: int | None, out, guard: _SignalGuard,
                 progress=None):
        self.model = model
        self.parser = parser
        self.output = output  # None: write nothing (fit)
        self.echo = echo
        self.learn = learn
        self.on_error = on_error
        self.batch_size = batch_size
        self.state = state if learn else None
        self.checkpoint_every = checkpoint_every
        self.out = out
        self.guard = guard
        self.progress = progress
        self.name = "-"
        self.several = False
        self.lines_read = 0
        self.n_bad = 0
        self.n_skipped = 0
        self._checkpointed = 0
        self._features = model.feature_names_in_ or None
        # The anomaly score's calibration, drawn from the model (never saved: rebuilt after a load).
        self.scorer = GaussianMixtureScorer.from_model(model) if output in ("json", "anomaly") else None

    # -- sources

    def run(self, files: typing.Sequence[str], stdin) -> None:
        self.several = len(files) > 1
        for name in files:
            self.name = "<stdin>" if name == "-" else name
            if name == "-":
                self._source(stdin)
            else:
                try:
                    handle = open(name, "rb")
                except OSError as error:
                    raise _Failed(f"cannot read {name}: {error.strerror or error}") from None
                with handle:
                    self._source(handle)

    def _source(self, stream) -> None:
        read = Reader(stream, _READ_SIZE)
        if self.batch_size == 1:
            self._lines(read)
        else:
            self._blocks(read)
        self.out.flush()
        self.guard.poll()

    # -- helpers

    def save(self) -> None:
        """Save the state, if there is one to save; `_SaveFailed` if it cannot be written."""
        if self.state:
            with self.guard:
                _save(self.model, self.state)
            self.guard.poll()

    def _after(self, n_lines: int) -> None:
        self.lines_read += n_lines
        if self.checkpoint_every and self.lines_read // self.checkpoint_every > self._checkpointed:
            self._checkpointed = self.lines_read // self.checkpoint_every
            self.save()

    def _ensure_features(self) -> list:
        if self._features is None:
            self._features = list(self.parser.features)
            with self.guard:
                if not self.model.feature_names_in_:
                    self.model.fix_features(self._features)
                self._features = self.model.feature_names_in_
        return self._features

    def _bad_line(self, raw: bytes, lineno: int, error: RecordError) -> bytes | None:
        """Report a bad line; the output line for it (NA), None to write nothing."""
        self.n_bad += 1
        where = f"{self.name}, line {lineno}" if self.several else f"line {lineno}"
        line = raw[: 4 * validation.MAX_SHOWN].rstrip(b"\r\n")  # all a message may quote, and more
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as problem:  # shown as bytes: b'\xff...', unless only cut short
            text = line[: problem.start].decode("utf-8") if problem.start > len(line) - 4 else line
        message = f"{where}: {error}: {validation.shorten(text)}"
        if self.on_error == "fail":
            raise _Failed(message)
        if self.on_error == "skip":
            self.n_skipped += 1
            return None
        self.out.flush()  # the output of earlier lines first, as for a reader of both streams
        report_warning(message)
        if self.output is None:
            return None
        na = _JSON_NA if self.output == "json" else _NA
        return raw.rstrip(b"\r\n") + b"\t" + na if self.echo else na

    # -- one line at a time (live)

    def _lines(self, read: typing.Callable[[], bytes]) -> None:
        """Handle each line as it comes. Its output is written before the next line is handled and
        flushed before the labeler may wait for input, so a producer that waits for each answer
        before it sends the next line gets it; a file or a full pipe gets one write for many
        lines rather than a system call a line."""
        handle = self._line_handler()
        lineno = 0
        pending: list[bytes] = []  # pieces of a line whose end has not been read yet
        while True:
            self.out.flush()
            self.guard.poll()  # a signal that came while the flush was writing
            chunk = read()
            if not chunk:
                break
            lines = chunk.split(b"\n")
            last = lines.pop()  # the start of the next line (b"" when the chunk ends with a line)
            if lines and pending:  # joined once, when its end comes: long lines cost their length
                pending.append(lines[0])
                lines[0] = b"".join(pending)
                pending = []
            if last:
                pending.append(last)
            handle(lines, lineno)
            lineno += len(lines)
            if self.progress is not None:
                self.progress.update(len(chunk))
        if pending:
            handle([b"".join(pending)], lineno)

    def _line_handler(self) -> typing.Callable[[list[bytes], int], None]:
        """The function that handles lines (without their b"\\n"), given the number of the line
        before them: for each, parse, predict and learn, write the output line. Its loop is the
        hot path of --batch-size 1, so one plain number a line, the common case, is read inline
        with float() (which takes exactly what the parser would); anything else asks the parser."""
        write, guard, echo, every = self.out.write, self.guard, self.echo, self.checkpoint_every
        step = key = number_step = None  # known from the first good line on

        def handle(lines: list[bytes], lineno: int) -> None:
            nonlocal step, key, number_step
            for raw in lines:
                lineno += 1
                line = None
                read = False
                if key is not None:
                    try:
                        value = float(raw)
                    except ValueError:
                        value = math.nan
                    if -MAX_ABS_VALUE <= value <= MAX_ABS_VALUE:  # and not NaN
                        line = number_step(value)
                        read = True
                if not read:
                    x = self._record(raw, lineno)
                    if x is not None:
                        if step is None:
                            step, key, number_step = self._one_step()
                        line = step(x)
                if line is not None:
                    write(raw.rstrip(b"\r") + b"\t" + line if echo else line)
                if guard.pending is not None:
                    guard.poll()
                if every:
                    self.lines_read += 1
                    if self.lines_read % every == 0:
                        self._checkpointed = self.lines_read // every
                        self.save()

        return handle

    def _record(self, raw: bytes, lineno: int) -> dict | None:
        """The record on a line, read by the parser; None for a bad line, once reported and its
        output line (NA) written."""
        try:
            row = self.parser.parse(raw)
        except RecordError as error:
            line = self._bad_line(raw, lineno, error)
            if line is not None:
                self.out.write(line + b"\n")
            return None
        features = self._ensure_features()
        return {features[0]: row[0]} if len(row) == 1 else dict(zip(features, row))

    def _one_step(self) -> tuple[typing.Callable[[dict], bytes | None], typing.Any, typing.Any]:
        """The model's work for one record, as a function returning the output line (None for
        fit); the feature's name when a line is one number that float() reads, else None; and
        then the same work as a function of that number."""
        model, guard, output, learn, scorer = self.model, self.guard, self.output, self.learn, self.scorer
        features = self._features
        key = features[0] if getattr(self.parser, "single", False) else None

        if output == "label":  # the common case, kept short
            label = model.learn_predict_one if learn else model.predict_one
            lines = [b"%d\n" % k for k in range(model.n_components)]  # labels are 0..K-1

            def step(x: dict) -> bytes:
                guard.critical = True  # as `with guard:`, without two method calls a line
                try:
                    return lines[label(x)]
                finally:
                    guard.critical = False

            if not learn:
                return step, key, lambda value: step({key: value})
            learn_predict_row = model.learn_predict_row  # no dict a line: a fifth of the time

            def number_step(value: float) -> bytes:
                guard.critical = True
                try:
                    return lines[learn_predict_row([value])]
                finally:
                    guard.critical = False

            return step, key, number_step

        def step(x: dict) -> bytes | None:
            with guard:
                if output is None:
                    model.learn_one(x)
                    return None
                if output == "proba":
                    text = _fmt_proba(model.predict_proba_one(x).values())
                else:
                    score = model.score_one(x)
                    if output == "score":
                        text = _fmt_score(score)
                    elif output == "anomaly":
                        text = _fmt_score(float(scorer.from_log_density(score)))
                    else:
                        proba = model.predict_proba_one(x)
                        text = _fmt_json(max(proba, key=proba.get), proba.values(), score,
                                         scorer.from_log_density(score))
                if learn:
                    model.learn_one(x)
                return text + b"\n"

        return step, key, lambda value: step({key: value})

    # -- blocks of lines (throughput)

    def _blocks(self, read: typing.Callable[[], bytes]) -> None:
        """Blocks of batch_size lines: reads gather until they hold a whole block (or the input
        ends), then every whole block among them is handled, the rest waiting for more input.
        The output is flushed before each read, so every whole block read is answered before the
        labeler may wait for input."""
        size = self.batch_size
        lineno = 0
        pending: list[bytes] = []
        n_pending = 0  # line ends in pending
        while True:
            self.out.flush()
            self.guard.poll()  # a signal that came while the flush was writing
            chunk = read()
            if chunk:
                pending.append(chunk)
                n_pending += chunk.count(b"\n")
                if n_pending < size:
                    continue
            data = b"".join(pending)
            unfinished = not chunk and data and not data.endswith(b"\n")
            if unfinished:  # the last line has no b"\n": give it one, counted nowhere
                data += b"\n"
            ends = np.flatnonzero(np.frombuffer(data, np.uint8) == ord("\n"))
            whole = len(ends) if not chunk else len(ends) - len(ends) % size
            if whole:
                self._buffer(data, ends[:whole], lineno)
                lineno += whole
                used = int(ends[whole - 1]) + 1
                if self.progress is not None:
                    self.progress.update(used - unfinished)
                data = data[used:]
            if not chunk:
                return
            pending, n_pending = ([data] if data else []), len(ends) - whole

    def _buffer(self, data: bytes, ends: np.ndarray, lineno: int) -> None:
        """The lines of data that end at `ends` (the first after line number `lineno`), in blocks.
        One-number lines are read for the whole buffer at once (`parse_lines`); a block with a
        line that reading cannot take goes the long way, which reports each bad line."""
        size = self.batch_size
        fast = None  # (values, whether each block was read whole, index of their first line)
        for a in range(0, len(ends), size):
            b = min(a + size, len(ends))
            begin, end = (int(ends[a - 1]) + 1 if a else 0), int(ends[b - 1])
            if fast is None:
                parsed = self.parser.parse_lines(memoryview(data)[begin:], ends[a:] - begin)
                if parsed is not None:
                    values, ok = parsed
                    fast = values, np.logical_and.reduceat(ok, np.arange(0, len(ok), size)), a
            matrix = None
            if fast is not None:
                values, whole, first = fast
                if whole[(a - first) // size]:
                    matrix = values[a - first:b - first]
            lines = data[begin:end].split(b"\n") if matrix is None or self.echo else None
            self._block(lines, lineno + a, matrix)

    def _block(self, lines: list[bytes] | None, start: int, matrix: np.ndarray | None = None) -> None:
        """One block: its lines (None when `matrix` has them all and no output needs the text),
        the number of the line before it, and its rows if already read."""
        parser = self.parser
        if matrix is None:
            matrix = parser.parse_block(lines)
        bad: dict[int, bytes | None] = {}
        failure = None
        if matrix is None:
            rows = []
            for i, raw in enumerate(lines):
                try:
                    rows.append(parser.parse(raw))
                except RecordError as error:
                    try:
                        bad[i] = self._bad_line(raw, start + i + 1, error)
                    except _Failed as failed:
                        failure = failed
                        lines = lines[:i]
                        break
            width = parser.n_features or 0
            matrix = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        texts = self._predict_learn(matrix) if len(matrix) else []
        if self.output is not None:
            self._write_block(lines, texts, bad)
        self.guard.poll()
        self._after(len(matrix) + len(bad))
        if failure is not None:
            raise failure

    def _predict_learn(self, matrix: np.ndarray) -> list[bytes] | np.ndarray:
        self._ensure_features()
        model, output = self.model, self.output
        texts: list[bytes] = []
        with self.guard:
            if output == "label":  # formatted by _write_block
                return model.learn_predict_many(matrix) if self.learn else model.predict_many(matrix)
            elif output == "proba":
                texts = [_fmt_proba(row) for row in model.predict_proba_many(matrix).tolist()]
            elif output == "score":
                texts = [_fmt_score(v) for v in model.score_many(matrix).tolist()]
            elif output == "anomaly":
                texts = [_fmt_score(v) for v in self.scorer.from_log_density(model.score_many(matrix)).tolist()]
            elif output == "json":
                proba = model.predict_proba_many(matrix)
                labels = proba.argmax(axis=1).tolist()
                scores = model.score_many(matrix)
                anomalies = self.scorer.from_log_density(scores).tolist()
                texts = [_fmt_json(k, p, s, a) for k, p, s, a in zip(labels, proba.tolist(), scores.tolist(), anomalies)]
            if self.learn:
                model.learn_many(matrix)
        return texts

    def _write_block(self, lines: list[bytes], texts, bad: dict) -> None:
        if isinstance(texts, np.ndarray):  # labels
            if not bad and not self.echo and self.model.n_components <= 10:
                # one digit a line: each label picks its two bytes from a table, no Python loop
                self.out.write(_DIGIT_LINES[texts].tobytes())
                return
            texts = list(map(b"%d".__mod__, texts.tolist()))
        if not bad and not self.echo:
            if texts:
                self.out.write(b"\n".join(texts) + b"\n")
            return
        results = iter(texts)
        chunks = []
        for i, raw in enumerate(lines):
            if i in bad:
                if bad[i] is not None:
                    chunks.append(bad[i])
                continue
            text = next(results)
            chunks.append(raw.rstrip(b"\r\n") + b"\t" + text if self.echo else text)
        if chunks:
            self.out.write(b"\n".join(chunks) + b"\n")


_READ_SIZE = 1 << 18  # bytes asked of each read: enough to spread numpy's cost per call, and its
# arrays small enough for the allocator to reuse (1 MiB reads measured slower: page faults)


def _want_progress(files: typing.Sequence[str], stream) -> bool:
    """A progress bar only makes sense for files of known size, shown on a terminal."""
    if not files or any(name == "-" for name in files):
        return False
    try:
        if not all(os.path.isfile(name) for name in files):
            return False
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def run(ctx: click.Context, files: tuple, options: dict, *, output: str | None, echo: bool = False,
        learn: bool = True, progress_flag: bool | None = False) -> None:
    """One ``label`` or ``fit`` command, from its parsed options (checked by the cli) to its exit."""
    state = options.get("state")
    lock = _lock_state(state, options["wait"]) if state and learn else None
    try:
        _run(ctx, files, options, output=output, echo=echo, learn=learn, progress_flag=progress_flag)
    finally:
        if lock is not None:
            lock.release()


def _run(ctx: click.Context, files: tuple, options: dict, *, output: str | None, echo: bool,
         learn: bool, progress_flag: bool | None) -> None:
    model = _build_model(ctx, options, learn)
    parser = _make_parser(ctx, options, model, _check_size(ctx, model, options))
    files = list(files) or ["-"]
    stdin = _binary(sys.stdin)
    guard = _SignalGuard()
    out = open_stdout(hold=guard)
    show = _want_progress(files, sys.stderr) if progress_flag is None else progress_flag
    state = options.get("state")
    labeler = None
    guard.install()
    try:
        with contextlib.ExitStack() as stack:
            bar = None
            if show:
                total = sum(os.path.getsize(name) for name in files if name != "-" and os.path.isfile(name))
                bar = stack.enter_context(click.progressbar(length=total, label="learning", file=sys.stderr))
            labeler = _Labeler(
                model, parser, output=output, echo=echo, learn=learn, on_error=options["on_error"],
                batch_size=options["batch_size"], state=state, checkpoint_every=options["checkpoint_every"],
                out=out, guard=guard, progress=bar,
            )
            try:
                labeler.run(files, stdin)
            finally:
                if bar is not None:  # end the bar's line before any message that follows
                    bar.render_finish()
        labeler.save()
        if labeler.n_skipped:
            click.echo(f"{PROG}: skipped {labeler.n_skipped} bad line(s)", err=True)
    except _Failed as failure:
        _flush_quietly(out)
        _save_after_stop(labeler)
        report_error(str(failure))
        ctx.exit(1)
    except _SaveFailed as failure:
        _flush_quietly(out)
        report_error(str(failure))
        ctx.exit(1)
    except WriteError as failure:
        saved = _save_after_stop(labeler)
        report_error(str(failure) + (f"; state saved to {state}" if saved else ""))
        ctx.exit(1)
    except _Interrupted as interrupted:
        _flush_quietly(out)
        name = signal.Signals(interrupted.signum).name
        if interrupted.forced:
            note = f"; state not saved (a model update was cut short): {state} holds its last save" if state else ""
            click.echo(f"{PROG}: interrupted twice by {name}{note}", err=True)
        else:
            saved = _save_after_stop(labeler)
            note = f"; state saved to {state}" if saved else ""
            click.echo(f"{PROG}: interrupted by {name}{note}", err=True)
        ctx.exit(128 + interrupted.signum)
    except BrokenPipeError:
        saved = _save_after_stop(labeler)
        silence_stdout()
        ctx.exit(0 if saved or not state else 1)
    except OSError as error:  # reading an input (writes and saves have their own errors above)
        _flush_quietly(out)
        saved = _save_after_stop(labeler)
        report_error(f"read error: {error.strerror or error}" + (f"; state saved to {state}" if saved else ""))
        ctx.exit(1)
    finally:
        guard.restore()


def _flush_quietly(out) -> None:
    try:
        out.flush()
    except (BrokenPipeError, OSError, ValueError, WriteError):
        silence_stdout()


def _save(model: OnlineGaussianMixture, state: str) -> None:
    """`model.save`, or `_SaveFailed` with one line saying why (the file is left as it was)."""
    try:
        model.save(state)
    except OSError as error:
        raise _SaveFailed(f"cannot save the state to {state}: {error.strerror or error} "
                          "(the file is as it was)") from None
    except ValueError as error:
        raise _SaveFailed(f"cannot save the state to {state}: {error}") from None


def _save_after_stop(labeler: _Labeler | None) -> bool:
    """Save after the run stopped early; False (and a message) if there is no state or it failed.
    Signals are ignored meanwhile: the save is short, and cutting it short would lose it."""
    if labeler is None or not labeler.state:
        return False
    labeler.guard.ignore()
    labeler.guard.pending = None
    try:
        _save(labeler.model, labeler.state)
    except _SaveFailed as error:
        report_error(str(error))
        return False
    return True


