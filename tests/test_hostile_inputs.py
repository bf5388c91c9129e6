"""Files from outside, as an attacker would hand them over: each verb ends in one bounded error line, or
skips the file with a warning, within seconds and without gigabytes, and never writes over an output.

Checkpoints are in test_trust.py; unpacking an archive in test_sources.py.
"""

from __future__ import annotations

import resource
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from cifar_lightning.data import sources
from cifar_lightning.data.images import decode_folder, decode_image
from cifar_lightning.errors import MAX_LINE, DataError, UserError
from harness import CONFIG, REPO, one_line_error

FAST_CHECKPOINT = REPO / "results" / "fast" / "last.ckpt"
# six levels of nine aliases: 330 bytes that stand for 531,441 strings ("billion laughs")
ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcde", "bcdef")
)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header says ``width`` x ``height`` (grey), with one empty data chunk: what an image
    viewer or PIL reads before any pixel. A real one of 20,000 x 20,000 zeros is under 400 KB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("side", [20_000, 12_000, 7_500])  # past PIL's error bound, past its warning, past ours only
def test_an_image_too_large_to_decode_is_refused_from_its_header(side, tmp_path):
    # found by trying: 20,000 pixels a side ended predict in a DecompressionBombError traceback; 12,000 cost 1.6 GB
    import cifar_lightning

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(folder / "fine.png")
    png_header(folder / "huge.png", side, side)
    before = peak_rss_mb()
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable or oversized file.*huge.png"):
        images, paths = decode_folder(folder, 32, 1000)
    assert [Path(p).name for p in paths] == ["fine.png"] and images.shape == (1, 32, 32, 3)
    model = cifar_lightning.load(FAST_CHECKPOINT)
    with pytest.raises(DataError, match=r"huge.png is .*more than the 40 megapixels this project decodes"):
        model.predict([folder / "huge.png"])
    with pytest.raises(DataError, match="more than the 40 megapixels"):
        decode_image(folder / "huge.png", 32)  # a training folder refuses it in one line
    assert peak_rss_mb() - before < 300


def test_explain_skips_an_oversized_image_as_it_skips_an_unreadable_one(tmp_path, capsys):
    from cifar_lightning.tools.explain import main as explain

    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "cat.png")
    png_header(tmp_path / "huge.png", 20_000, 20_000)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "overlays"
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable or oversized file"):
        explain(["--ckpt_path", str(FAST_CHECKPOINT), str(tmp_path), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["cat-cam.png"]
    # again: the earlier overlay is kept and the new one goes beside it
    with pytest.warns(UserWarning):
        explain(["--ckpt_path", str(FAST_CHECKPOINT), str(tmp_path), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["cat-cam-2.png", "cat-cam.png"]


def test_a_yaml_alias_bomb_is_refused_before_it_is_built(tmp_path, refused):
    # found by trying: 330 bytes kept `upgrade` running past 120 s at 4 GB, and gave fit a 72 MB error line
    bomb = tmp_path / "config.yaml"
    bomb.write_text(ALIAS_BOMB)
    assert len(ALIAS_BOMB) < 400
    before = peak_rss_mb()
    assert "YAML aliases" in refused("fit", "--config", str(bomb))
    assert "YAML aliases" in refused("fit", "--config", ALIAS_BOMB)  # a config given as text
    assert "YAML aliases" in refused("search", "--config", CONFIG, "--space", str(bomb))
    assert "YAML aliases" in refused("compare", str(tmp_path), "--baseline", str(bomb))
    (tmp_path / "deep.yaml").write_text("a: " + "[" * 40 + "]" * 40)
    assert "nests deeper than 32" in refused("fit", "--config", str(tmp_path / "deep.yaml"))
    (tmp_path / "space.yaml").write_text("lr: [unclosed")
    assert "is not YAML" in refused("search", "--config", CONFIG, "--space", str(tmp_path / "space.yaml"))
    assert peak_rss_mb() - before < 200


def test_an_error_line_is_bounded_whatever_value_it_quotes(capsys):
    from harness import main_in_process

    result = main_in_process(["fit", "--config", CONFIG, "--trainer.max_epochs", "x" * 2_000_000], capsys)
    line = one_line_error(result).strip().splitlines()[-1]
    assert len(line) <= MAX_LINE and line.endswith("lists the options)")


def csv_run(folder: Path, **values: str) -> Path:
    """A run folder as a CSVLogger keeps it: one epoch, with these values (test/acc=2.0, say)."""
    row = {
        "epoch": "0",
        "step": "9",
        "train/loss_epoch": "1.5",
        "train/acc": "0.4",
        "val/acc": "0.5",
        "val/loss": "1.4",
        **values,
    }
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(",".join(row) + "\n" + ",".join(row.values()) + "\n")
    return folder


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"test/acc": "2.0"}, "test_acc = 2.0, not an accuracy"),
        ({"val/acc": "nan"}, "best_val_acc = nan"),
        ({"val/acc": "high"}, "holds a record this project did not write"),
        ({"epoch": "1e400"}, "holds a record this project did not write"),
    ],
)
def test_report_refuses_a_record_it_would_misreport(values, named, tmp_path, refused):
    # found by trying: NaN went into summary.json (invalid JSON), and test_acc 2.0 was reported
    run = csv_run(tmp_path / "run", **values)
    assert named in refused("report", str(run), "--out", str(tmp_path / "out"))
    assert not (tmp_path / "out" / "summary.json").exists()


def succeeded(capsys, *args: str) -> None:
    from harness import main_in_process

    result = main_in_process(list(args), capsys)
    assert result.returncode == 0, result.stderr[-2000:]


def test_report_and_compare_end_in_one_line_on_broken_folders(tmp_path, refused, capsys):
    run = csv_run(tmp_path / "run")
    (run / "run.json").write_text("{not json")
    assert "is not JSON" in refused("report", str(run))
    (run / "run.json").unlink()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "events.out.tfevents.1.host").write_bytes(
        bytes(range(256)) * 20
    )  # found by trying: an empty report, exit 0
    assert "holds no epoch a fit logged" in refused("report", str(garbage))
    assert "not a folder" in refused("report", str(tmp_path / "missing"))
    out = tmp_path / "out"
    succeeded(capsys, "report", str(run), "--out", str(out))  # written
    assert "already holds a report" in refused("report", str(run), "--out", str(out))  # kept
    succeeded(capsys, "report", str(run), "--out", str(out), "--overwrite")
    assert "cannot use the path" in refused("report", str(run), "--out", "/proc/no/such/folder")
    assert "cannot use the path" in refused("report", str(run), "--out", str(tmp_path / ("x" * 300) / "y"))
    # compare: the committed hour run has no validation (its best_val_acc is null); broken folders are one line
    (out / "config.yaml").write_text((REPO / "configs" / "fast.yaml").read_text())
    succeeded(capsys, "compare", str(REPO / "results" / "hour"), str(out), "--baseline", CONFIG)
    (out / "metrics.csv").write_text("epoch,val_acc\n")  # a header and no rows
    assert "not a report folder" in refused("compare", str(out), "--baseline", CONFIG)
    assert "cannot read the run's config" in refused(
        "compare", str(tmp_path), "--baseline", CONFIG
    )  # not a report folder


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00binary", b"not-a-digest  copy.tar.gz\n"])
def test_a_checksum_file_that_is_not_one_is_one_line(content, tmp_path):
    archive = tmp_path / "copy.tar.gz"
    archive.write_bytes(b"x")
    (tmp_path / "copy.tar.gz.sha256").write_bytes(content)
    with pytest.raises(DataError, match="does not start with a SHA-256"):
        sources.prepare(tmp_path / "data", archive, download_ok=False)


def test_an_export_never_mixes_two_checkpoints_or_replaces_one_unasked(tmp_path, monkeypatch):
    # found by trying: a second checkpoint's export replaced the first's, and a kill mid-export left
    # model.ts of one checkpoint beside model.onnx of the other
    from cifar_lightning.inference import export

    def write_files(model, classes, out: Path) -> dict[str, Path]:
        (out / "model.pt2").write_text(model)
        if model == "killed":
            raise KeyboardInterrupt  # as a kill between the two files
        (out / "model.onnx").write_text(model)
        return {"program": out / "model.pt2", "onnx": out / "model.onnx"}

    monkeypatch.setattr(export, "write_files", write_files)
    out = tmp_path / "export" / "last"
    export.export("first", [], out)
    with pytest.raises(UserError, match="already exists .*--overwrite"):
        export.export("second", [], out)
    with pytest.raises(KeyboardInterrupt):
        export.export("killed", [], out, overwrite=True)
    assert {p.name: p.read_text() for p in out.glob("model.*")} == {"model.pt2": "first", "model.onnx": "first"}
    export.export("second", [], out, overwrite=True)
    assert {p.name: p.read_text() for p in out.glob("model.*")} == {"model.pt2": "second", "model.onnx": "second"}
    assert [p.name for p in out.parent.iterdir()] == ["last"]  # no staging folder left behind


def test_overwrite_replaces_only_an_earlier_export(tmp_path, monkeypatch):
    """--overwrite once replaced a checkpoint's folder, and deleted a user's file to make a folder there."""
    from cifar_lightning.inference import export

    monkeypatch.setattr(export, "write_files", lambda model, classes, out: {"onnx": out / "model.onnx"})
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").write_bytes(b"weights")
    (tmp_path / "thesis.txt").write_text("the user's")
    (tmp_path / "empty").mkdir()
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "model.onnx").write_text("someone else's, in an export's name")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for out in (run, tmp_path / "thesis.txt", tmp_path / "empty", tmp_path / "export", tmp_path):
        with pytest.raises(UserError, match="not an earlier export of this project: --overwrite replaces only those"):
            export.export("model", [], out, overwrite=True)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_the_alias_bomb_is_what_the_issue_measured():
    # the bomb above really stands for half a million values once built: the bound is not vacuous
    built = yaml.safe_load(ALIAS_BOMB)
    count, stack = 0, [built["f"]]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack += item
        else:
            count += 1
    assert count == 9**6


def test_an_archive_that_unpacks_past_the_bound_is_refused_as_it_streams(tmp_path, monkeypatch, image_folder):
    # a gzip of zeros is a thousand times smaller than what it unpacks to: the sizes in the members'
    # headers are counted before each member's data is written
    import tarfile

    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(image_folder / "tiny-cifar", arcname="tiny-cifar")
    monkeypatch.setattr(sources, "MAX_UNPACKED_BYTES", 2_000)  # the tiny folder is about 60 kB
    with pytest.raises(DataError, match="holds more than .* far more than a small-image data set"):
        sources.prepare(tmp_path / "data", archive, download_ok=False)
    assert not list((tmp_path / "data").glob(".*"))  # nothing written beside the folder
