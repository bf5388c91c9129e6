"""Errors that reach the user as one line, what went wrong and how to fix it, and the printing of them."""

from __future__ import annotations

import errno
import gc
import importlib
import multiprocessing
import os
import pickle
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
from argparse import ArgumentError
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch.utilities.exceptions import MisconfigurationException

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left; over a disk quota
# a folder that cannot be written: read-only, no permission, a file where a folder should be
NOT_WRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST, errno.EISDIR)
# a path that cannot name a file here: too long, a loop of links, a folder that is not there
BAD_PATH = (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOENT, errno.EINVAL)
VERBOSE_ENV = "CIFAR_LIGHTNING_VERBOSE"  # set to 1 for tracebacks on user errors
USER_ERROR_EXIT = 2  # argparse's code for "you asked for something wrong"
FAILURE_EXIT = 1  # anything else: a bug, or a fault outside the user's settings
EDITED = "the checkpoint is damaged or was edited: use the run's own checkpoint"  # the fix for a checkpoint that contradicts itself


def shell_command(name: str = "cifar-lightning") -> str:
    """How the user's shell runs this environment's ``name``: the bare name where PATH finds that very file, else
    its path (after ``make train`` the venv is not on PATH)."""
    own = Path(sys.executable).parent / name
    if not own.is_file():  # no console script here (a source checkout): the module through this Python
        return f"{shell_command('python')} -m cifar_lightning" if name == "cifar-lightning" else name
    found = shutil.which(name)
    if found is not None and os.path.abspath(found) == os.path.abspath(own):  # abspath: a venv's python links elsewhere
        return name
    relative = os.path.relpath(own)
    return shlex.quote(relative if not relative.startswith("..") else str(own))


class UserError(Exception):
    """A problem with the user's input, not a bug: one ``error:`` line and exit status 2."""


class DataError(UserError):
    """The data set cannot be found, unpacked or decoded."""


class CheckpointError(UserError):
    """A checkpoint cannot be used: not a complete checkpoint, or not of the configured model."""


class ConfigError(UserError):
    """A setting is out of its allowed range; the message names the key and the range."""


def require(verb: str, packages: tuple[str, ...], extra: str) -> None:
    """One line naming the packages ``verb`` needs that are not installed, and the extra that installs them."""
    missing = []
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ConfigError(f"{verb} needs {', '.join(missing)}, not installed: pip install 'cifar_lightning[{extra}]'")


# torch re-raises a loader worker's exception in the main process as the same type, with the
# worker's whole traceback as its message: "Caught X in DataLoader worker process N.\nOriginal
# Traceback ...\nmodule.X: the message"
_WORKER_MESSAGE = re.compile(r"^Caught (\w+) in DataLoader worker process (\d+)\.")


def why_not_writable(err: OSError) -> str:
    if err.errno in (errno.ENOTDIR, errno.EEXIST):
        return "a file is in the way of a folder there"
    return err.strerror or type(err).__name__


def ensure_writable_folder(folder: Path, what: str, fix: str) -> Path:
    """Create ``folder`` and a file in it now, so one that cannot be written is named (its role ``what``, the
    setting ``fix``) before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        if err.errno in DISK_FULL:
            raise UserError(
                f"the {what} folder {folder} is on a full disk ({err.strerror}): free disk space there, or {fix}"
            ) from None
        raise UserError(
            f"cannot write the {what} folder {folder} ({why_not_writable(err)}): make it writable, or {fix}"
        ) from None
    return folder


def worker_failure(err: BaseException) -> tuple[str, str] | None:
    """(the exception's type name, its own message) when ``err`` is a re-raised loader-worker error."""
    text = str(err)
    found = _WORKER_MESSAGE.match(text)
    if found is None:
        return None
    last = text.strip().splitlines()[-1]
    message = last.split(": ", 1)[1] if ": " in last else last
    return found.group(1), message


MAX_LINE = 500  # characters of an error line, "error: " included: a value from a hostile file cannot flood the terminal


def one_line(text: str, limit: int = MAX_LINE - len("error: ")) -> str:
    """``text`` on one line, at most ``limit`` characters: a long middle (a value quoted back) is cut, so the
    start (what failed) and the end (the fix) stay; ``textwrap.shorten`` would cut the fix."""
    text = str(text)
    if len(text) > 4 * limit:  # split() of a huge value would copy all of it first
        text = text[: 2 * limit] + " " + text[-2 * limit :]
    line = " ".join(text.split())
    if len(line) <= limit:
        return line
    tail = limit // 3
    return f"{line[: limit - tail - 5]} ... {line[-tail:]}"


def describe(err: BaseException, command: str) -> str:
    """The one line for a user error."""
    worker = worker_failure(err)
    if worker is not None:
        return worker[1]
    if isinstance(err, ArgumentError):  # a config typo, a wrong type or value (jsonargparse)
        return f"{err} ({command} --help lists the options)"
    if isinstance(err, pickle.UnpicklingError):  # torch.load(weights_only=True) met a non-tensor object
        first = str(err).strip().splitlines()[0]
        return (
            f"the checkpoint holds pickled objects that are not tensors or plain values, so it was refused "
            f"unread ({first}); load only checkpoints you trust, and re-save them with this project"
        )
    return str(err)  # ours, or Lightning's own "these settings conflict"


def fail(message: str, code: int) -> None:
    print("error: " + one_line(message), file=sys.stderr, flush=True)
    sys.exit(code)


@contextmanager
def user_errors(verbose: bool, command: str):
    """A failure as one ``error:`` line (the traceback only if ``verbose``): exit 2 for a user's mistake, 1 for a
    loader worker's failure; ``command`` is named in the hint after a parse error."""
    verbose = verbose or bool(os.environ.get(VERBOSE_ENV))
    failure: tuple[str, int] | None = None
    previous_hook = threading.excepthook
    if not verbose:
        threading.excepthook = _one_line_for_a_full_disk(previous_hook)
    try:
        yield
    except (ArgumentError, UserError, MisconfigurationException, pickle.UnpicklingError) as err:
        if verbose:
            raise
        failure = describe(err, command), USER_ERROR_EXIT
    except OSError as err:
        if verbose or err.errno not in (*DISK_FULL, *NOT_WRITABLE, *BAD_PATH):
            raise
        if err.errno in BAD_PATH:
            failure = (
                f"cannot use the path {err.filename} ({err.strerror}): give a shorter or existing path",
                USER_ERROR_EXIT,
            )
        elif err.errno in NOT_WRITABLE:  # anywhere a file is written that was not checked before the work began
            where = f" {err.filename}" if err.filename else ""
            failure = (
                (
                    f"cannot write{where} ({why_not_writable(err)}): make the folder writable, or point the logger's "
                    "save_dir, --data.cache_dir or the output elsewhere"
                ),
                USER_ERROR_EXIT,
            )
        else:
            # anywhere a file is written (run.json, the event files, a callback's output), not only
            # the checkpoint and the data cache, which say more about themselves
            where = f" writing {err.filename}" if err.filename else ""
            failure = (
                (
                    f"the disk is full{where} ({err.strerror}): free disk space, or point the logger's save_dir "
                    "and --data.cache_dir at a disk with room; a fit resumes with --ckpt_path last"
                ),
                USER_ERROR_EXIT,
            )
    except Exception as err:  # noqa: BLE001 - only loader-worker failures are rewritten; the rest propagate
        worker = worker_failure(err)
        if worker is None or verbose:
            raise
        name, message = worker
        failure = (
            f"a data loader worker failed with {name}: {message} (rerun with --verbose for its traceback)",
            FAILURE_EXIT,
        )
    finally:
        threading.excepthook = previous_hook
    if failure is not None:
        stop_loader_workers()
        fail(*failure)


def _one_line_for_a_full_disk(previous_hook):
    """A background thread (TensorBoard's event writer) that meets a full disk says so in one line."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in DISK_FULL:
            print(
                f"warning: the disk is full ({args.exc_value.strerror}): thread {args.thread.name if args.thread else '?'} "
                "stopped writing (TensorBoard's curves end here)",
                file=sys.stderr,
            )
            return
        previous_hook(args)

    return hook


def stop_loader_workers(timeout: float = 10.0) -> None:
    """End any DataLoader worker still running, torch's SIGCHLD check (a traceback per worker) off first: an error
    ends in its one line and leaves no process behind."""
    gc.collect()
    children = multiprocessing.active_children()
    if not children:
        return
    if hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.terminate()
    for child in children:
        child.join(timeout)
        if child.is_alive():
            child.kill()
            child.join(timeout)
