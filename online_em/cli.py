"""The ``online-em`` command: label a stream of numbers from stdin or files, line by line.

``online-em label`` reads one record a line (numbers separated by commas or whitespace, or JSON
objects with ``--format jsonl``) and writes one line per record: the most probable component by
default. For each record it predicts, then learns, so the model follows the stream. A bad line
gives a warning on stderr and an ``NA`` line (``--on-error``), so output lines stay aligned with
input lines. ``--state FILE`` resumes a saved model and saves it at the end, at checkpoints, and on
SIGINT or SIGTERM.

Exit codes: 0 success (also when the reader of stdout goes away, as with ``| head``); 1 a bad
record with ``--on-error fail``, or a state file or input that cannot be read; 2 a usage error;
130 after SIGINT and 143 after SIGTERM (128 + the signal number), with the state saved.

>>> from click.testing import CliRunner
>>> result = CliRunner().invoke(cli, ["label", "--warm-up", "4", "--seed", "0"],
...                             input="1\\n2\\n10\\n11\\n1.5\\n10.5\\n")
>>> result.exit_code, len(result.output.split())
(0, 6)

"""

from __future__ import annotations

import contextlib
import functools
import io
import math
import os
import signal
import sys
import threading
import typing

import click
import numpy as np

from . import __version__
from .model import MAX_ABS_VALUE, OnlineGaussianMixture
from .records import RecordError, make_parser, parse_columns

__all__ = ["cli", "main"]

_PROG = "online-em"
_NA = b"NA"
_DIGIT_LINES = np.frombuffer(b"".join(b"%d\n" % k for k in range(10)), dtype=np.uint16)  # b"0\n"...b"9\n"
_JSON_NA = b"null"
_MAX_SHOWN = 80  # characters of a bad line quoted in a warning


# ---------------------------------------------------------------------- control flow


class _Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; raised where the model is consistent."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


class _Failed(Exception):
    """A bad record with ``--on-error fail``."""


class _SignalGuard:
    """Turns SIGINT and SIGTERM into `_Interrupted`, but never in the middle of a model update:
    a signal that arrives inside ``with guard:`` waits until `poll`, after the output is written."""

    def __init__(self):
        self.critical = False
        self.pending: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame):
        if self.critical:
            self.pending = signum
        else:
            raise _Interrupted(signum)

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handler)

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


def _error(message: str) -> None:
    click.echo(f"{_PROG}: error: {message}", err=True)


def _warn(message: str) -> None:
    click.echo(f"{_PROG}: warning: {message}", err=True)


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


# ---------------------------------------------------------------------- options

_MODEL_OPTIONS = {  # option name -> the model's hyper-parameter
    "components": "n_components",
    "covariance_type": "covariance_type",
    "alpha": "alpha",
    "warm_up": "warm_up",
    "seed": "seed",
}


def _model_options(function):
    defaults = OnlineGaussianMixture()
    options = [
        click.option("-k", "--components", type=click.IntRange(min=1), default=defaults.n_components,
                     show_default=True, help="Number of mixture components."),
        click.option("--covariance-type", type=click.Choice(["full", "diag", "spherical", "tied"]),
                     default=defaults.covariance_type, show_default=True,
                     help="Shape of the covariances, as in scikit-learn."),
        click.option("--alpha", type=click.FloatRange(0.5, 1.0, min_open=True), default=defaults.alpha,
                     show_default=True, help="Decay of the step size t**-alpha, in (0.5, 1]."),
        click.option("--warm-up", type=click.IntRange(min=2), default=None,
                     help="Points buffered and fitted in batch before the streaming updates "
                          "(default: 10 per free parameter of the mixture, 500 to 20,000)."),
        click.option("--seed", type=int, default=None, help="Random seed (default: unpredictable)."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _input_options(function):
    options = [
        click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
                     help="text: numbers separated by commas or whitespace; jsonl: one JSON object a line."),
        click.option("--columns", metavar="LIST",
                     help="Fields to read: column numbers from 1 (text, e.g. 2,3) or keys (jsonl, e.g. x,y)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="1: handle each line as it arrives (live). N > 1: vectorised blocks of N lines, "
                          "for throughput. Either way, output is flushed before waiting for input."),
        click.option("--on-error", type=click.Choice(["warn", "skip", "fail"]), default="warn", show_default=True,
                     help="A bad line: warn on stderr and write NA; drop it silently; or stop with exit code 1."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
                     help="Also save --state every N input lines."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _explicit(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


def _load_state(path: str) -> OnlineGaussianMixture:
    from .persistence import StateFileError  # here: most runs have no state to load

    try:
        return OnlineGaussianMixture.load(path)
    except StateFileError as error:
        _error(f"cannot load the state: {error}")
    except OSError as error:
        _error(f"cannot read the state file {path}: {error.strerror or error}")
    raise SystemExit(1)


def _build_model(ctx: click.Context, options: dict, learn: bool) -> OnlineGaussianMixture:
    """The model: loaded from --state if the file exists (explicit model options must agree with
    it), else new from the model options."""
    state = options.get("state")
    if state and os.path.exists(state):
        model = _load_state(state)
        saved = model._get_params()
        for name, param in _MODEL_OPTIONS.items():
            if _explicit(ctx, name) and options[name] != saved[param]:
                flag = "--" + name.replace("_", "-")
                raise click.UsageError(
                    f"{flag} {options[name]} contradicts the state file {state} ({param}={saved[param]!r})", ctx
                )
        return model
    if not learn:
        raise click.UsageError("--no-learn needs --state FILE with a saved model", ctx)
    return OnlineGaussianMixture(**{param: options[name] for name, param in _MODEL_OPTIONS.items()})


def _make_parser(ctx: click.Context, options: dict, model: OnlineGaussianMixture):
    try:
        columns = parse_columns(options["columns"], options["fmt"])
    except ValueError as error:
        raise click.BadParameter(str(error), ctx, param_hint="'--columns'") from None
    try:
        return make_parser(options["fmt"], columns, model.feature_names_in_ or None)
    except ValueError as error:
        raise click.UsageError(f"{error} (state file {options.get('state')})", ctx) from None


# ---------------------------------------------------------------------- the labeler


def _fmt_proba(row) -> bytes:
    return ",".join(["%.6g" % p for p in row]).encode()


def _fmt_score(value: float) -> bytes:
    return b"%.6f" % value


def _fmt_json(label: int, proba, score: float) -> bytes:
    import json  # only --output json and show --json need it: not imported at start-up

    return json.dumps({"label": int(label), "proba": list(proba), "score": float(score)}).encode()


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
        read = _reader(stream)
        if self.batch_size == 1:
            self._lines(read)
        else:
            self._blocks(read)
        self.out.flush()

    # -- helpers

    def save(self) -> None:
        if self.state:
            with self.guard:
                self.model.save(self.state)
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
                if self.model._features is None:
                    self.model._set_features(self._features)
                self._features = self.model.feature_names_in_
        return self._features

    def _bad_line(self, raw: bytes, lineno: int, error: RecordError) -> bytes | None:
        """Report a bad line; the output line for it (NA), None to write nothing."""
        self.n_bad += 1
        where = f"{self.name}, line {lineno}" if self.several else f"line {lineno}"
        line = raw.rstrip(b"\r\n")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line  # shown as bytes: b'\xff...'
        if len(text) > _MAX_SHOWN:
            text = text[:_MAX_SHOWN] + ("..." if isinstance(text, str) else b"...")
        message = f"{where}: {error}: {text!r}"
        if self.on_error == "fail":
            raise _Failed(message)
        if self.on_error == "skip":
            self.n_skipped += 1
            return None
        self.out.flush()  # the output of earlier lines first, as for a reader of both streams
        _warn(message)
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
        model, guard, output, learn = self.model, self.guard, self.output, self.learn
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
            learn_predict_row = model._learn_predict_row  # no dict a line: a fifth of the time

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
                proba = model.predict_proba_one(x)
                if output == "proba":
                    text = _fmt_proba(proba.values())
                else:
                    score = model.score_one(x)
                    if output == "score":
                        text = _fmt_score(score)
                    else:
                        text = _fmt_json(max(proba, key=proba.get), proba.values(), score)
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
            elif output == "json":
                proba = model.predict_proba_many(matrix)
                labels = proba.argmax(axis=1).tolist()
                scores = model.score_many(matrix).tolist()
                texts = [_fmt_json(k, p, s) for k, p, s in zip(labels, proba.tolist(), scores)]
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


def _reader(stream) -> typing.Callable[[], bytes]:
    """A function returning the stream's next bytes (b"" at its end): what one read brings, up
    to _READ_SIZE, so that a pipe gives what it holds without waiting for more."""
    read = getattr(stream, "read1", None) or stream.read  # a raw stream's read() does the same
    return functools.partial(read, _READ_SIZE)


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


def _run(ctx: click.Context, files: tuple, options: dict, *, output: str | None, echo: bool = False,
         learn: bool = True, progress_flag: bool | None = False) -> None:
    model = _build_model(ctx, options, learn)
    parser = _make_parser(ctx, options, model)
    files = list(files) or ["-"]
    stdin = _binary(sys.stdin)
    out = _binary(sys.stdout)
    guard = _SignalGuard()
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
            click.echo(f"{_PROG}: skipped {labeler.n_skipped} bad line(s)", err=True)
    except _Failed as failure:
        _flush_quietly(out)
        _save_after_stop(labeler)
        _error(str(failure))
        ctx.exit(1)
    except _Interrupted as interrupted:
        _flush_quietly(out)
        saved = _save_after_stop(labeler)
        name = signal.Signals(interrupted.signum).name
        note = f"; state saved to {state}" if saved else ""
        click.echo(f"{_PROG}: interrupted by {name}{note}", err=True)
        ctx.exit(128 + interrupted.signum)
    except BrokenPipeError:
        _save_after_stop(labeler)
        _silence_stdout()
        ctx.exit(0)
    finally:
        guard.restore()


def _flush_quietly(out) -> None:
    try:
        out.flush()
    except (BrokenPipeError, OSError, ValueError):
        _silence_stdout()


def _save_after_stop(labeler: _Labeler | None) -> bool:
    if labeler is None or not labeler.state:
        return False
    labeler.guard.pending = None
    try:
        labeler.model.save(labeler.state)
    except (OSError, ValueError) as error:
        _error(f"could not save the state to {labeler.state}: {error}")
        return False
    return True


# ---------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name=_PROG)
def cli():
    """Gaussian mixtures learned online: label a stream of numbers, one line at a time.

    \b
    Try it:  online-em demo | online-em label | head
    """


_STATE_HELP = "Model file: loaded if it exists, saved at the end, at checkpoints, and on SIGINT/SIGTERM."


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_model_options
@_input_options
@click.option("--output", type=click.Choice(["label", "proba", "score", "json"]), default="label",
              show_default=True, help="label: the component; proba: its probabilities; score: the log "
                                      "density; json: all of them as a JSON object.")
@click.option("--echo", is_flag=True, help="Write the input record first, then a tab.")
@click.option("--learn/--no-learn", default=True, show_default=True,
              help="Learn each record after labelling it, or label with a frozen model from --state.")
@click.option("--state", type=click.Path(dir_okay=False), help=_STATE_HELP)
@click.pass_context
def label(ctx, files, output, echo, learn, **options):
    """Label each record of FILES (or stdin, "-") with its mixture component.

    Reads one record a line and writes one line per record, in order. A bad line gives a warning
    on stderr and an NA line (null with --output json) unless --on-error says otherwise.

    \b
    Examples:
      online-em demo | online-em label | head
      tail -f app.log | cut -d' ' -f5 | online-em label --state model.json
      online-em label --output proba --echo data.csv
    """
    _run(ctx, files, options, output=output, echo=echo, learn=learn)


@cli.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_model_options
@_input_options
@click.option("--state", type=click.Path(dir_okay=False), required=True, help=_STATE_HELP)
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: for files, on a terminal).")
@click.pass_context
def fit(ctx, files, progress, **options):
    """Learn the records of FILES ("-" for stdin) into --state, printing nothing."""
    _run(ctx, files, options, output=None, progress_flag=progress)


def _summary(model: OnlineGaussianMixture) -> dict:
    cov = model.covariances_
    std = np.sqrt(model._parameters.variances())
    return {
        "n_components": model.n_components,
        "covariance_type": model.covariance_type,
        "features": model.feature_names_in_,
        "n_samples_seen": model.n_samples_seen,
        "is_initialised": model.is_initialised,
        "weights": model.weights_.tolist(),
        "means": model.means_.tolist(),
        "std": std.tolist(),
        "covariances": cov.tolist(),
    }


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in enumerate(zip(row, widths)))
        .rstrip()
        for row in rows
    )


def _number(value: float) -> str:
    return "%.6g" % value


@cli.command()
@click.option("--state", type=click.Path(exists=True, dir_okay=False), required=True,
              help="The model file to show.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for machines.")
def show(state, as_json):
    """Print the model saved in --state: weights, means, standard deviations (and covariances)."""
    model = _load_state(state)
    if model.feature_names_in_ == []:
        summary = {"n_components": model.n_components, "covariance_type": model.covariance_type,
                   "features": [], "n_samples_seen": 0, "is_initialised": False,
                   "weights": None, "means": None, "std": None, "covariances": None}
    else:
        summary = _summary(model)
    if as_json:
        import json

        click.echo(json.dumps(summary, indent=2))
        return
    features = summary["features"]
    click.echo(f"model: {state}")
    click.echo(f"components: {summary['n_components']}   covariance: {summary['covariance_type']}   "
               f"features: {', '.join(map(str, features)) or '-'}   points learned: {summary['n_samples_seen']}")
    if not features:
        click.echo("(the model has not seen any data yet)")
        return
    if not summary["is_initialised"]:
        click.echo(f"(warming up: {model.n_samples_seen} of {model.warm_up_size} points; batch fit of the points so far)")
    single = len(features) == 1
    header = ["component", "weight"]
    header += ["mean", "std"] if single else [f"mean[{f}]" for f in features] + [f"std[{f}]" for f in features]
    rows = [header]
    for k in range(model.n_components):
        rows.append([str(k), "%.4f" % summary["weights"][k]]
                    + [_number(v) for v in summary["means"][k]] + [_number(v) for v in summary["std"][k]])
    click.echo(_table(rows))
    if model.covariance_type in ("full", "tied") and not single:
        covariances = summary["covariances"]
        blocks = [("tied covariance", covariances)] if model.covariance_type == "tied" else [
            (f"covariance of component {k}", c) for k, c in enumerate(covariances)]
        for title, matrix in blocks:
            click.echo(f"\n{title}:")
            click.echo(_table([[""] + [str(f) for f in features]]
                              + [[str(f)] + [_number(v) for v in line] for f, line in zip(features, matrix)]))


@cli.command()
@click.option("--n", "n", type=click.IntRange(min=1), default=12_000, show_default=True,
              help="Number of points: a third from N(20, 5^2), two thirds from N(40, 5^2).")
@click.option("--shuffle/--no-shuffle", default=True, show_default=True,
              help="Interleave the two processes at random, or write all of the first process first.")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option("--truth", is_flag=True, help="Add the generating process (0 or 1) after a comma.")
def demo(n, shuffle, seed, truth):
    """Write the tutorial's stream to stdout: 4,000 points from N(20, 5^2) and 8,000 from N(40, 5^2).

    \b
    Example:
      online-em demo | online-em label | uniq -c | head
    """
    values, labels = demo_stream(n, shuffle, seed)
    out = _binary(sys.stdout)
    try:
        for start in range(0, n, 65536):
            chunk = values[start:start + 65536].tolist()
            if truth:
                text = "\n".join(f"{v:.6f},{k}" for v, k in zip(chunk, labels[start:start + 65536].tolist()))
            else:
                text = "\n".join([f"{v:.6f}" for v in chunk])
            out.write(text.encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        _silence_stdout()


def demo_stream(n: int = 12_000, shuffle: bool = True, seed: int | None = 42) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's two processes: n // 3 points from N(20, 5^2), the rest from N(40, 5^2),
    and which process each point came from.

    >>> values, labels = demo_stream(12, shuffle=False, seed=0)
    >>> labels.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> bool(abs(demo_stream(30_000)[0].mean() - 100 / 3) < 0.2)
    True

    """
    rng = np.random.default_rng(seed)
    first = n // 3
    values = np.concatenate([rng.normal(20.0, 5.0, first), rng.normal(40.0, 5.0, n - first)])
    labels = np.concatenate([np.zeros(first, dtype=np.int64), np.ones(n - first, dtype=np.int64)])
    if shuffle:
        order = rng.permutation(n)
        values, labels = values[order], labels[order]
    return values, labels


def main(argv: typing.Sequence[str] | None = None) -> None:
    """The console script ``online-em`` (and ``python -m online_em``)."""
    try:
        code = cli.main(args=argv, prog_name=_PROG, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    except BrokenPipeError:  # e.g. the help text into a closed pipe: quietly, as a filter should
        _silence_stdout()
        code = 0
    except KeyboardInterrupt:  # outside the labeler's own handling
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
