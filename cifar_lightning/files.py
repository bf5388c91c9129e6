"""Files from outside, read within bounds; files the project writes for the user, atomically and beside
what is there, never over it."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from cifar_lightning.errors import UserError

MAX_TEXT_BYTES = 1 << 20  # a config, space file or run record: this project's are under 20 kB
MAX_NODES = 100_000  # values a YAML file may stand for once its aliases are expanded; a config has a few hundred
MAX_NESTING = 32  # levels of mappings and lists; the configs have about 6


def check_yaml(text: str, where: str) -> None:
    """Refuse YAML whose aliases or nesting would blow up once built and copied ("billion laughs"), from its parse
    events alone: an alias counts as every value its anchor stands for. By hand: PyYAML bounds neither."""
    if len(text) > MAX_TEXT_BYTES:
        raise UserError(
            f"{where} is {len(text) >> 10} kB, more than a config of this project needs: pass the file you meant"
        )
    sizes: dict[str, int] = {}  # anchor -> how many values it stands for
    open_nodes: list[tuple[str | None, int]] = [(None, 0)]  # (anchor, values so far) of each open mapping or list
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                open_nodes.append((event.anchor, 1))
                if len(open_nodes) > MAX_NESTING + 1:
                    raise UserError(
                        f"{where} nests deeper than {MAX_NESTING} levels, which a config never needs: flatten it"
                    )
                continue
            if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                anchor, count = open_nodes.pop()
            elif isinstance(event, yaml.ScalarEvent):
                anchor, count = event.anchor, 1
            elif isinstance(event, yaml.AliasEvent):
                anchor, count = None, sizes.get(event.anchor, 1)
            else:
                continue
            if anchor is not None:
                sizes[anchor] = count
            parent_anchor, total = open_nodes[-1]
            open_nodes[-1] = parent_anchor, total + count
            if total + count > MAX_NODES:
                raise UserError(
                    f"{where} stands for more than {MAX_NODES:,} values once its YAML aliases are expanded, which a config "
                    "never needs: write the values out"
                )
    except yaml.YAMLError as err:
        raise UserError(f"{where} is not YAML ({' '.join(str(err).split())[:200]}): fix the file") from None


def is_regular(path: Path) -> bool:
    """A regular file (through links), which reading cannot block on: FIFOs, devices and sockets are not."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def open_regular(path: Path, what: str):
    """A regular file, opened without blocking (``open`` on a FIFO waits for ever) and checked by ``fstat``, or one line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as err:
        raise UserError(f"cannot read {what} {path} ({err.strerror}): check the path") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{what} {path} is not a regular file (a folder, pipe or device): pass a file")
    return os.fdopen(fd, "rb")


def read_bytes(path: Path, what: str, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file from outside (``open_regular``), or one line saying why not."""
    with open_regular(path, what) as f:
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise UserError(f"cannot read {what} {path} ({err.strerror}): check the file") from None
    if len(data) > limit:
        raise UserError(
            f"{what} {path} is over {limit >> 20} MB, more than one of this project's: pass the file you meant"
        )
    return data


def read_text(path: Path, what: str) -> str:
    """A small text file from outside, or one line saying why not."""
    data = read_bytes(path, what, MAX_TEXT_BYTES)
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise UserError(f"{what} {path} is not text (UTF-8): pass the file you meant") from None


def load_yaml(text: str, where: str) -> Any:
    """YAML from outside as plain data, checked before it is built (``check_yaml``); a tag, an impossible date or
    a malformed scalar is one line."""
    check_yaml(text, where)
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as err:
        raise UserError(
            f"{where} holds YAML this project does not read ({' '.join(str(err).split())[:160]}): write plain values "
            "(no !! tags, real dates)"
        ) from None


def read_yaml(path: Path, what: str = "config") -> Any:
    """A YAML file from outside (``load_yaml``)."""
    return load_yaml(read_text(path, what), f"{what} {path}")


def read_json(path: Path, what: str = "record") -> Any:
    """A JSON file from outside (a run's ``run.json``, a report's ``summary.json``), or one line saying why not."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, or an integer of thousands of digits
        raise UserError(f"{what} {path} is not JSON ({str(err)[:120]}): write it again, or pass another") from None


def beside(path: Path) -> Path:
    """``path`` if nothing is there, else the first free ``<stem>-2<suffix>``, ``-3``, ...: an earlier output is kept."""
    if not path.exists():
        return path
    number = 2
    while (candidate := path.with_name(f"{path.stem}-{number}{path.suffix}")).exists():
        number += 1
    return candidate


def write_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(temporary)`` into a hidden file beside ``path``, then rename it into place: a reader, or a kill,
    never sees half a file. Returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def check_replaceable(out: Path, verb: str, names: set[str]) -> None:
    """``--overwrite`` replaces only a folder holding ``verb``'s mark (``.<verb>``) and nothing but its ``names``."""
    if not out.exists() and not out.is_symlink():
        return
    found = {p.name for p in out.iterdir()} if out.is_dir() and not out.is_symlink() else None
    if found is None or f".{verb}" not in found or not found <= names | {f".{verb}"}:
        what = "a file" if found is None else f"a folder of {', '.join(sorted(found)[:5]) or 'nothing'}"
        raise UserError(
            f"{out} is {what}, not an earlier {verb} of this project: --overwrite replaces only those; pass another --out"
        )
