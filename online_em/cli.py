"""The ``online-em`` command: label a stream of numbers from stdin or files, line by line.

``online-em label`` reads one record a line (numbers separated by commas or whitespace, or JSON
objects with ``--format jsonl``) and writes one line per record: the most probable component by
default. For each record it predicts, then learns, so the model follows the stream. A bad line
gives a warning on stderr and an ``NA`` line (``--on-error``), so output lines stay aligned with
input lines. ``--state FILE`` resumes a saved model and saves it at the end, at checkpoints, and on
SIGINT, SIGTERM or SIGHUP; the run checks first that it can write the file and locks it
(`online_em.locking`). The work itself is `online_em.labeler`, imported only when a command runs:
this module needs click alone, so ``--help`` and usage errors start fast.

Exit codes: 0 success (also when the reader of stdout goes away, as with ``| head``); 1 a bad
record with ``--on-error fail``, a state file that cannot be read, written or locked, an input that
cannot be read, or a write error on stdout; 2 a usage error; 129 after SIGHUP, 130 after SIGINT
and 143 after SIGTERM (128 + the signal number), with the state saved.

>>> from click.testing import CliRunner
>>> result = CliRunner().invoke(cli, ["label", "--warm-up", "4", "--seed", "0"],
...                             input="1\\n2\\n10\\n11\\n1.5\\n10.5\\n")
>>> result.exit_code, len(result.output.split())
(0, 6)

"""

from __future__ import annotations

import errno
import io
import os
import sys
import typing

import click

from . import __version__
from .validation import DEFAULT_MAX_SIZE

if typing.TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .model import OnlineGaussianMixture

# numpy, River and the model are imported when a command needs them (see `online_em.labeler`):
# ``online-em --help`` and usage errors cost click's start-up only.

__all__ = ["MODEL_OPTIONS", "PROG", "cli", "explicit_option", "load_state", "main", "report_error", "report_warning",
           "silence_stdout"]

PROG = "online-em"
# The model's defaults, as the command line shows them (tests/test_cli.py checks they agree).
_DEFAULTS = {"n_components": 2, "covariance_type": "full", "alpha": 0.75, "warm_up": None, "adaptive": True,
             "halflife": None}


def report_error(message: str) -> None:
    click.echo(f"{PROG}: error: {message}", err=True)


def report_warning(message: str) -> None:
    click.echo(f"{PROG}: warning: {message}", err=True)


def silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


def load_state(path: str) -> OnlineGaussianMixture:
    """The model saved in `path`; exit 1 with one line on stderr if it cannot be loaded."""
    from .model import OnlineGaussianMixture
    from .persistence import StateFileError

    try:
        return OnlineGaussianMixture.load(path)
    except StateFileError as error:
        report_error(f"cannot load the state: {error}")
    except OSError as error:
        report_error(f"cannot read the state file {path}: {error.strerror or error}")
    raise SystemExit(1)


# ---------------------------------------------------------------------- options

MODEL_OPTIONS = {  # option name -> the model's hyper-parameter
    "components": "n_components",
    "covariance_type": "covariance_type",
    "alpha": "alpha",
    "warm_up": "warm_up",
    "adaptive": "adaptive",
    "halflife": "halflife",
    "seed": "seed",
}


def _model_options(function):
    defaults = _DEFAULTS
    options = [
        click.option("-k", "--components", type=click.IntRange(min=1), default=defaults["n_components"],
                     show_default=True,
                     help="Most mixture components (at most --warm-up); with --fixed-components, exactly."),
        click.option("--adaptive/--fixed-components", default=defaults["adaptive"], show_default=True,
                     help="Components are born, merged and pruned as the stream calls for, up to -k; "
                          "or exactly -k components."),
        click.option("--covariance-type", type=click.Choice(["full", "diag", "spherical", "tied"]),
                     default=defaults["covariance_type"], show_default=True,
                     help="Shape of the covariances, as in scikit-learn."),
        click.option("--alpha", type=click.FloatRange(0.5, 1.0, min_open=True), default=defaults["alpha"],
                     show_default=True, help="Decay of each component's step on its own clock (its mass), in (0.5, 1]."),
        click.option("--halflife", type=click.FloatRange(min=1.0), default=defaults["halflife"], metavar="N",
                     help="For a drifting stream: forget with a half-life of N points (a point weighs half "
                          "after N more). Default: a stationary stream, nothing forgotten."),
        click.option("--warm-up", type=click.IntRange(min=2), default=None,
                     help="Points buffered and fitted in batch before the streaming updates "
                          "(default: 100 per free parameter of the mixture, 500 to 20,000)."),
        click.option("--seed", type=int, default=None, help="Random seed (default: unpredictable)."),
        click.option("--max-size", type=click.IntRange(min=1), default=DEFAULT_MAX_SIZE, show_default=True, metavar="N",
                     help="Refuse a model that updates more than N numbers a point (K*D*D for full "
                          "covariances, K*D for diag): a first line of too many fields is a bad line."),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _input_options(function):
    options = [
        click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
                     help="text: numbers separated by commas, tabs or spaces; jsonl: one JSON object a line."),
        click.option("--delimiter", type=click.Choice(["comma", "tab", "space"]), default=None,
                     help="Text fields are separated by exactly this (tab: as cut -f; space: runs of "
                          "whitespace). Default: commas if a line has one, else tabs, else spaces."),
        click.option("--columns", metavar="LIST",
                     help="Fields to read: column numbers from 1 (text, e.g. 2,3) or keys (jsonl, e.g. x,y)."),
        click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
                     help="1: handle each line as it arrives (live). N > 1: vectorised blocks of N lines, "
                          "for throughput. Either way, output is flushed before waiting for input."),
        click.option("--on-error", type=click.Choice(["warn", "skip", "fail"]), default="warn", show_default=True,
                     help="A bad line: warn on stderr and write NA; drop it silently; or stop with exit code 1."),
        click.option("--checkpoint-every", type=click.IntRange(min=1), metavar="N",
                     help="Also save --state every N input lines."),
        click.option("--wait", is_flag=True,
                     help="If another run is using --state, wait for it to end (default: exit 1)."),

    ]
    for option in reversed(options):
        function = option(function)
    return function


def explicit_option(ctx: click.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)
    return source in (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


# ---------------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name=PROG)
def cli():
    """Gaussian mixtures learned online: label a stream of numbers, one line at a time.

    \b
    Try it:  online-em demo | online-em label | head
    """


_STATE_HELP = ("Model file: loaded if it exists, saved at the end, at checkpoints, and on SIGINT, SIGTERM or "
               "SIGHUP; locked for the run (FILE.lock beside it).")


def _check_options(ctx: click.Context, options: dict, learn: bool) -> None:
    """Usage errors of the state options, found before anything is read."""
    state = options.get("state")
    if state is not None and not state.strip():
        raise click.BadParameter("the file name is empty", ctx, param_hint="'--state'")
    if options.get("checkpoint_every") and not (state and learn):
        why = "--no-learn saves nothing" if state else "it needs --state FILE"
        raise click.UsageError(f"--checkpoint-every saves the state, but {why}", ctx)
    if options.get("wait") and not (state and learn):
        raise click.UsageError("--wait waits for the lock of --state, which this run does not take", ctx)


def _run(ctx: click.Context, files: tuple, options: dict, **how) -> None:
    _check_options(ctx, options, how.get("learn", True))
    from .labeler import run  # numpy, River and the model: only now

    run(ctx, files, options, **how)


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@_model_options
@_input_options
@click.option("--output", type=click.Choice(["label", "proba", "score", "anomaly", "json"]), default="label",
              show_default=True, help="label: the component; proba: its probabilities; score: the log "
                                      "density; anomaly: the anomaly score in [0, 1], the share of the "
                                      "model's mass denser than the record; json: all of them as a JSON "
                                      "object.")
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
    import numpy as np

    cov = model.covariances_
    std = np.sqrt(model.variances_)
    return {
        "n_components": model.n_components,
        "covariance_type": model.covariance_type,
        "features": model.feature_names_in_,
        "n_samples_seen": model.n_samples_seen,
        "is_initialised": model.is_initialised,
        "active": [int(k) for k in np.flatnonzero(model.weights_ > 0)],
        "moves": model.moves_,
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
    model = load_state(state)
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
    active = summary["active"]
    if len(active) < model.n_components:
        moves = summary["moves"]
        click.echo(f"active components: {len(active)} of at most {model.n_components}   births: {moves['births']}   "
                   f"merges: {moves['merges']}   prunes: {moves['prunes']}   splits: {moves['splits']}")
    for k in active:
        rows.append([str(k), "%.4f" % summary["weights"][k]]
                    + [_number(v) for v in summary["means"][k]] + [_number(v) for v in summary["std"][k]])
    click.echo(_table(rows))
    if model.covariance_type in ("full", "tied") and not single:
        covariances = summary["covariances"]
        blocks = [("tied covariance", covariances)] if model.covariance_type == "tied" else [
            (f"covariance of component {k}", covariances[k]) for k in active]
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
    from .streams import WriteError, open_stdout

    values, labels = demo_stream(n, shuffle, seed)
    out = open_stdout()
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
        silence_stdout()
    except WriteError as error:
        report_error(str(error))
        raise SystemExit(1) from None


def demo_stream(n: int = 12_000, shuffle: bool = True, seed: int | None = 42) -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's two processes: n // 3 points from N(20, 5^2), the rest from N(40, 5^2),
    and which process each point came from.

    >>> values, labels = demo_stream(12, shuffle=False, seed=0)
    >>> labels.tolist()
    [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> bool(abs(demo_stream(30_000)[0].mean() - 100 / 3) < 0.2)
    True

    """
    import numpy as np

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
        code = cli.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        code = error.exit_code
    except click.Abort:
        click.echo("Aborted!", err=True)
        code = 1
    except BrokenPipeError:  # e.g. the help text into a closed pipe: quietly, as a filter should
        silence_stdout()
        code = 0
    except KeyboardInterrupt:  # outside the labeler's own handling
        code = 130
    except OSError as error:  # click.echo into a full device (show, --help)
        code = _write_failed(error)
    try:  # what is still buffered: a full disk is one line, not a traceback at exit
        if sys.stdout is not None:  # None: started with stdout closed (>&-)
            sys.stdout.flush()
    except BrokenPipeError:
        silence_stdout()
    except OSError as error:
        code = _write_failed(error)
    sys.exit(code if isinstance(code, int) else 0)


def _write_failed(error: OSError) -> int:
    """Report a failed write to stdout in one line; the exit code (other errors propagate)."""
    if error.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
        raise error
    silence_stdout()
    report_error(f"write error: {error.strerror}")
    return 1
