"""Tune chosen settings of a recipe on the validation split with Optuna: a resumable study, shared by workers.

Each trial is a fit (pruned by Optuna's Lightning callback), scored by its best validation accuracy. The study
lives in a SQLite file or any Optuna storage; a dead worker's trial is retried once through the heartbeat. Beside
the study: ``.trials.csv``, ``.importance.png`` and ``.best.yaml`` (written by the worker that finishes last).
docs/running.md has the commands.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import math
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from cifar_lightning.errors import ConfigError, UserError, require, shell_command, user_errors
from cifar_lightning.files import is_regular, load_yaml, read_yaml
from cifar_lightning.runs.resume import counts_for_training, flatten

MONITOR = "val/acc"  # what the trials are scored and pruned on
HASH_ATTR = "base_config_sha256"
SPACE_FORMS = "{low: L, high: H} (floats, or ints when both are ints; log: true for a log scale) or {choices: [...]}"


def as_number(value):
    """A YAML scalar as the number it spells: YAML 1.1 reads 1e-6 (no dot) as a string, which a user means as 1e-06."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value  # "inf" and "nan" stay words, refused as such
    return value


def read_space(path: Path) -> dict[str, dict]:
    """The search space file: setting key -> {low, high[, log]} or {choices}; one line for a bad entry."""
    if not path.is_file():
        raise ConfigError(f"search space {path} does not exist: pass a YAML file like configs/search/fast.yaml")
    space = read_yaml(path, "search space")
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"search space {path} holds no settings: give each setting as key: {SPACE_FORMS}")
    for key, spec in space.items():
        if isinstance(spec, dict):  # a range's bounds as numbers (choices and log are taken as written)
            spec = space[key] = {k: as_number(v) if k in ("low", "high") else v for k, v in spec.items()}
        ok = isinstance(spec, dict) and (
            (set(spec) == {"choices"} and isinstance(spec["choices"], list) and spec["choices"])
            or (
                {"low", "high"} <= set(spec) <= {"low", "high", "log"}
                and all(isinstance(spec[b], (int, float)) and not isinstance(spec[b], bool) for b in ("low", "high"))
                and spec["low"] < spec["high"]
                and spec.get("log", False) in (True, False)
                and (not spec.get("log") or spec["low"] > 0)  # a log scale starts above 0
            )
        )
        if not ok:
            raise ConfigError(f"search space {path}: {key} must be {SPACE_FORMS}, not {spec!r}")
    return space


def check_keys(space: dict, settings: dict[str, Any], config: str) -> None:
    """Every key of the space is a setting of the recipe, named when it is not."""
    for key in space:
        if key not in settings:
            close = difflib.get_close_matches(key, list(settings), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"search space key {key} is not a setting of {config}{hint}: give the full dotted key, as config.yaml nests it"
            )


def training_hash(settings: dict[str, Any], space: dict) -> str:
    """A hash of the recipe's training settings, less the ones searched: what a study belongs to."""
    kept = {k: v for k, v in settings.items() if counts_for_training(k) and k not in space}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def suggest(trial, key: str, spec: dict):
    if "choices" in spec:
        return trial.suggest_categorical(key, spec["choices"])
    if isinstance(spec["low"], int) and isinstance(spec["high"], int):
        return trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log")))
    return trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def in_space(value, spec: dict) -> bool:
    if "choices" in spec:
        return value in spec["choices"]
    return isinstance(value, (int, float)) and not isinstance(value, bool) and spec["low"] <= value <= spec["high"]


def set_key(tree: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        tree = tree[part]
    tree[last] = value


def parse_enqueued(text: str, space: dict) -> dict:
    """``key=value,key=value`` -> a trial's settings (YAML values), every key in the space."""
    params = {}
    for pair in filter(None, text.split(",")):
        key, sep, value = pair.partition("=")
        if not sep or key not in space:
            raise ConfigError(
                f"--enqueue {text}: each entry must be KEY=VALUE with KEY in the search space ({', '.join(space)})"
            )
        params[key] = as_number(load_yaml(value, f"--enqueue {key}"))
    return params


SQLITE_WAIT_S = 60  # how long a process waits for another's write to the study file before failing
CONNECT_TIMEOUT_S = 20  # seconds to reach a database server, or the command stops in one line
# a running trial writes a heartbeat this often; one silent for the grace period (its worker was killed)
# is marked failed by the next worker that starts a trial, and enqueued once more
HEARTBEAT_S, GRACE_S = 20, 60
TABLE_ATTEMPTS = 5
JOURNAL = "journal:"  # --storage journal:PATH: Optuna's journal file, for a shared file system without a database


def storage_of(url: str):
    """An Optuna storage from a URL: any database SQLAlchemy reaches (``sqlite:///...``,
    ``postgresql+psycopg2://user@host:port/db``), or ``journal:PATH``."""
    import optuna

    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        path = Path(url[len(JOURNAL) :])
        if (path.exists() or path.is_symlink()) and not is_regular(path):  # open() on a FIFO waits for ever
            raise UserError(f"journal {path} is not a regular file (a folder, pipe or device): pass a file's path")
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    import sqlalchemy.exc

    dialect = database_url(url).get_backend_name()
    # no command waits on a server past CONNECT_TIMEOUT_S: a server that accepts and never answers included
    timeouts = {"sqlite": {"timeout": SQLITE_WAIT_S}, "postgresql": {"connect_timeout": CONNECT_TIMEOUT_S}}
    timeouts["mysql"] = timeouts["postgresql"]
    engine = {"connect_args": timeouts.get(dialect, {}), "pool_pre_ping": dialect != "sqlite"}
    for attempt in range(TABLE_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1),
            )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers that start at once on a new database race to create Optuna's tables; the loser
            # meets the winner's (PostgreSQL: "duplicate key ... pg_type"), and finds them on the next try
            if attempt == TABLE_ATTEMPTS - 1:
                raise
            time.sleep(1 + attempt)


def database_url(url: str):
    """SQLAlchemy's parse of a storage URL, or one line that says it is not one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        if url.partition("://")[2].count("@") > 1:  # an unquoted "@" in a password: no parser splits it right
            raise ValueError(url)
        return make_url(url)
    except (ArgumentError, ValueError):
        raise UserError(
            f"--storage {shown_url(url)} is not a database URL: write it as postgresql+psycopg2://user@host:5432/db, "
            "sqlite:///path or journal:PATH, with any @ or / of a password quoted (%40, %2F)"
        ) from None


def shown_url(url: str) -> str:
    """The storage URL without its password, whatever characters it holds, for a line a person reads: parsed by
    SQLAlchemy, and when it cannot be parsed, only its scheme."""
    from sqlalchemy.engine import make_url

    if url.startswith(JOURNAL):
        return url
    scheme, _, rest = url.partition("://")
    if rest.count("@") > 1:  # an unquoted "@" in the password, which no parser splits right: hide all before the last
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL: nothing past the scheme is shown
        return url.split(":", 1)[0] + "://***"


@contextmanager
def storage_errors(url: str):
    """A storage that cannot be reached, or goes away mid-study, is one line naming it; a trial's run
    folder keeps its last checkpoint, and the same command joins the study again."""
    import optuna
    import sqlalchemy.exc

    storage_failures = (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
    try:
        yield
    except Exception as raised:  # noqa: BLE001 - Optuna can end a trial with its own error raised from the storage's
        err = raised
        while err is not None and not isinstance(err, storage_failures):
            err = err.__cause__ or err.__context__
        if err is None:
            raise
        first = " ".join(str(getattr(err, "orig", None) or err).split())[:200]
        raise UserError(
            f"the study's storage {shown_url(url)} failed ({type(err).__name__}: {first}): check that it is up and "
            "reachable, then run the same command again to rejoin the study"
        ) from None


@contextmanager
def study_lock(study_path: Path):
    """Processes that start together on this machine create the study one after the other, waiting at most
    ``SQLITE_WAIT_S``."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(f"{study_path}.lock", timeout=SQLITE_WAIT_S):
            yield
    except Timeout:
        raise UserError(
            f"another search has held {study_path}.lock for {SQLITE_WAIT_S} s: let it start, then run this again"
        ) from None


def open_study(path: Path, storage: str, fingerprint: str, config: str, startup: int, seed: int | None):
    import optuna

    study = optuna.create_study(
        study_name=path.stem,
        storage=storage_of(storage),
        direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(startup, 1)),
        # pruning from the first epoch on, once `startup` trials have finished
        pruner=optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=0),
    )
    stored = study.user_attrs.get(HASH_ATTR)
    if stored is None:
        study.set_user_attr(HASH_ATTR, fingerprint)
        study.set_user_attr("config", config)
    elif stored != fingerprint:
        raise UserError(
            f"study {path} belongs to another recipe ({study.user_attrs.get('config')}, other training settings): "
            f"pass another --study for {config}"
        )
    return study


def objective(config: str, overrides: list[str], space: dict, mine: set[int]):
    import optuna
    from lightning.pytorch.callbacks import LambdaCallback
    from optuna_integration import PyTorchLightningPruningCallback

    from cifar_lightning.callbacks import NonFiniteLossError
    from cifar_lightning.lightning_cli import run_cli

    def run_trial(trial) -> float:
        mine.add(trial.number)  # this worker's trials: the last to finish writes the best config
        try:
            params = {key: suggest(trial, key, spec) for key, spec in space.items()}
        except ValueError as err:  # another worker's space gave a key another distribution
            raise UserError(
                f"the study was searched over another space ({' '.join(str(err).split())[:160]}): give every worker "
                "the same --space, or pass another --study"
            ) from None
        args = [
            "fit",
            "--config",
            config,
            *overrides,
            *(f"--{key}={json.dumps(value)}" for key, value in params.items()),
        ]
        callbacks = [
            PyTorchLightningPruningCallback(trial, monitor=MONITOR),
            LambdaCallback(on_fit_start=lambda trainer, module: trial.set_user_attr("run_dir", trainer.log_dir)),
        ]
        try:
            cli = run_cli(args, extra_callbacks=callbacks)
        except optuna.TrialPruned:
            trial.set_user_attr("stopped_by", "pruner (validation curve)")
            raise
        except NonFiniteLossError as err:  # diverged: as unpromising as a trial gets
            trial.set_user_attr("stopped_by", f"non-finite loss ({err})")
            raise optuna.TrialPruned(str(err)) from None
        best = cli.trainer.checkpoint_callback.best_model_score
        if best is None:
            raise UserError(
                f"trial {trial.number} logged no {MONITOR}: a search needs the validation split (data.val_size > 0)"
            )
        return float(best)

    return run_trial


def finished_last(study, mine: set[int]) -> bool:
    """Whether no trial of the study is running or waiting and the one that finished last is this worker's:
    of workers that finish together, one alone writes the best config (the storage orders their finishes)."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    unfinished = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    finished = [t for t in trials if t.datetime_complete is not None]
    if any(t.state in unfinished for t in trials) or not finished:
        return False
    return max(finished, key=lambda t: (t.datetime_complete, t.number)).number in mine


def write_outputs(study, path: Path, base: dict, mine: set[int]) -> list[str]:
    """The study's table, importance plot and best config beside it; the lines that say what was written."""
    import optuna

    lines = []
    table = path.with_suffix(".trials.csv")
    study.trials_dataframe().to_csv(table, index=False)
    lines.append(f"trials: {table}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) >= 2:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        axes = optuna.visualization.matplotlib.plot_param_importances(study)
        axes.figure.tight_layout()
        axes.figure.savefig(path.with_suffix(".importance.png"), dpi=110)
        plt.close(axes.figure)
        lines.append(f"importance: {path.with_suffix('.importance.png')}")
    else:
        lines.append(f"importance: not drawn ({len(complete)} finished trial(s); it needs 2)")
    if complete and not finished_last(study, mine):
        lines.append("best config: left to the worker that finishes the study's last trial")
    elif complete:
        best = study.best_trial
        for key, value in best.params.items():
            set_key(base, key, value)
        best_config = path.with_suffix(".best.yaml")
        header = (
            f"# the best trial of study {path} (trial {best.number}, best {MONITOR} {best.value:.4f}, "
            f"run {best.user_attrs.get('run_dir')})\n"
        )
        best_config.write_text(header + yaml.safe_dump(base, sort_keys=False))
        settings = "\n".join(f"  {key}: {value}" for key, value in best.params.items())
        lines += [
            f"best trial {best.number}: {MONITOR} {best.value:.4f} with",
            settings,
            f"train it: {shell_command()} fit --config {best_config}",
        ]
    return lines


class OneLine(logging.Formatter):
    """A trial's line without the traceback Optuna attaches to a failed one (about 240 lines for a failed
    fit); the failure itself ends the search in its own one line, and --verbose shows the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(
            super().format(logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})).split()
        )


def report_trials_on_stderr() -> None:
    """Optuna's line for each trial, on this call's stderr: its own handler keeps the stream it first
    met, which a caller running several searches in one process (the tests) has replaced since."""
    import optuna

    optuna.logging.disable_default_handler()
    logger = logging.getLogger("optuna")
    for handler in [h for h in logger.handlers if getattr(h, "search_lines", False)]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.search_lines = True
    handler.setFormatter(OneLine("[%(levelname)s %(asctime)s] %(message)s"))
    logger.addHandler(handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="cifar-lightning search", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the recipe to tune (configs/fast.yaml)")
    parser.add_argument("--space", required=True, type=Path, help=f"YAML: setting key -> {SPACE_FORMS}")
    parser.add_argument(
        "--study",
        type=Path,
        help="the study's SQLite file, or with --storage the prefix of its output files; its name is the "
        "study's (default lightning_logs/search-<config>.db)",
    )
    parser.add_argument(
        "--storage",
        help="where the study lives, for workers on several machines: an Optuna storage URL "
        "(postgresql+psycopg2://user@host:5432/db, sqlite:///path) or journal:PATH (default: the --study file)",
    )
    parser.add_argument("--trials", type=int, default=10, help="trials this process runs (default 10)")
    parser.add_argument("--timeout", type=float, help="minutes after which this process starts no new trial")
    parser.add_argument("--startup", type=int, default=3, help="finished trials before pruning starts (default 3)")
    parser.add_argument(
        "--seed", type=int, help="the sampler's seed (leave unset when several processes share a study)"
    )
    parser.add_argument(
        "--enqueue",
        action="append",
        default=[],
        metavar="KEY=VALUE,...",
        help="a trial to run first with these settings; repeat for more",
    )
    args, overrides = parser.parse_known_args(argv)
    with user_errors("--verbose" in overrides, "cifar-lightning search"):
        overrides = [a for a in overrides if a != "--verbose"]
        require("cifar-lightning search", ("optuna", "optuna_integration", "pandas"), "search")
        from cifar_lightning.lightning_cli import build

        space = read_space(args.space)
        base_cli = build(args.config, overrides)
        base = yaml.safe_load(base_cli.parser.dump(base_cli.config, skip_unset=False))
        settings = flatten(base)
        check_keys(space, settings, args.config)
        if not settings.get("data.val_size"):
            raise ConfigError("a search scores trials on the validation split: data.val_size must be above 0")
        report_trials_on_stderr()
        study_path = args.study or Path("lightning_logs") / f"search-{Path(args.config).stem}.db"
        enqueued = [parse_enqueued(text, space) for text in args.enqueue]
        study_path.parent.mkdir(parents=True, exist_ok=True)
        storage = args.storage or f"sqlite:///{study_path}"
        import optuna

        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # the heartbeat's
        with storage_errors(storage):
            # processes that start together on this machine create the study once, one after the other
            with study_lock(study_path):
                study = open_study(
                    study_path, storage, training_hash(settings, space), args.config, args.startup, args.seed
                )
                if not study.trials:  # the recipe as it is, the yardstick for every other trial
                    own = {key: settings[key] for key in space if in_space(settings[key], space[key])}
                    if len(own) == len(space):
                        study.enqueue_trial(own, skip_if_exists=True)
                for params in enqueued:
                    study.enqueue_trial(params)
            del base_cli
            mine: set[int] = set()
            study.optimize(
                objective(args.config, overrides, space, mine),
                n_trials=args.trials,
                gc_after_trial=True,
                timeout=args.timeout * 60 if args.timeout else None,
            )
        for line in write_outputs(study, study_path, base, mine):
            print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
