"""A checkpoint is data: nothing it names is imported unless trusted, and nothing it holds allocates beyond its weights.

Each crafted checkpoint sits beside a module that writes a file when imported, and that folder is
on sys.path, as the current folder is for ``python -c`` and ``python -m`` in a downloaded model
folder. The file must never appear unless the class was trusted.
"""

from __future__ import annotations

import copy
import resource
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import cifar_lightning
from cifar_lightning.errors import CheckpointError
from cifar_lightning.models import SeedNet
from cifar_lightning.training.distillation import Distillation
from cifar_lightning.training.module import ImageClassifier
from harness import CONFIG, TINY, data_args

MODULE = """
import pathlib
pathlib.Path({marker!r}).write_text("imported")
import torch
from cifar_lightning.models import SeedNet
from cifar_lightning.training.distillation import Distillation


class Net(SeedNet):
    pass


class Opt(torch.optim.SGD):
    pass


def instantiate(cls, config):
    return cls(**config)
"""


@pytest.fixture
def hostile(tmp_path, monkeypatch, finished_run):
    """``craft(edit)`` writes a copy of a real checkpoint changed by ``edit(checkpoint, module)`` beside a
    module that leaves ``marker`` when imported; the folder is the current one and on sys.path."""
    module = f"evil_{uuid.uuid4().hex[:10]}"  # a fresh name: no earlier import can hide one
    marker = tmp_path / "IMPORTED"
    (tmp_path / f"{module}.py").write_text(MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    good = torch.load(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", weights_only=True)

    def craft(edit) -> Path:
        checkpoint = copy.deepcopy(good)
        edit(checkpoint, module)
        path = tmp_path / f"model-{uuid.uuid4().hex[:6]}.ckpt"
        torch.save(checkpoint, path)
        return path

    return SimpleNamespace(module=module, marker=marker, craft=craft, good=good)


def hp(**values):
    """An edit that sets hyperparameters; ``{m}`` in a string value is the hostile module's name."""

    def fill(value, module):
        if isinstance(value, str):
            return value.format(m=module)
        if isinstance(value, dict):
            return {k: fill(v, module) for k, v in value.items()}
        return value

    def edit(checkpoint, module):
        for key, value in values.items():
            checkpoint["hyper_parameters"][key] = fill(value, module)

    return edit


SEED = "cifar_lightning.models.SeedNet"
# every place a checkpoint can name code, each naming the hostile module
NAMES = {
    "network": hp(network={"class_path": "{m}.Net", "init_args": {}}),
    "network as a bare name": hp(network="{m}.Net"),
    "optimizer": hp(optimizer={"class_path": "{m}.Opt", "init_args": {"lr": 0.1}}),
    "optimizer as a bare name": hp(optimizer="{m}.Opt"),
    "distillation": hp(
        distillation={
            "class_path": "{m}.Distillation",
            "init_args": {"teacher": {"class_path": SEED}, "checkpoint": "t.ckpt"},
        }
    ),
    "distillation teacher": hp(
        distillation={
            "class_path": "cifar_lightning.training.distillation.Distillation",
            "init_args": {"teacher": {"class_path": "{m}.Net"}, "checkpoint": "t.ckpt"},
        }
    ),
    "nested in the network": hp(
        network={"class_path": SEED, "init_args": {"num_classes": 10, "block": {"class_path": "{m}.Net"}}}
    ),
    "module class": hp(_class_path="{m}.Module"),
    "instantiator": hp(_instantiator="{m}.instantiate"),
    "another setting": hp(label_smoothing={"class_path": "{m}.Net"}),
    "a setting ImageClassifier lacks": hp(extra={"class_path": "{m}.Net"}),
}


def cli_args(subcommand: str, ckpt: Path, real_data_dir, real_archive) -> list[str]:
    return [subcommand, "--config", CONFIG, *data_args(real_data_dir, real_archive), *TINY, "--ckpt_path", str(ckpt)]


@pytest.mark.parametrize("place", NAMES)
def test_a_name_a_checkpoint_carries_is_never_imported(place, hostile, refused, real_data_dir, real_archive):
    ckpt = hostile.craft(NAMES[place])
    for load in (cifar_lightning.load, ImageClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError, match=rf"{hostile.module}\.\w+ .*trusted="):
            load(ckpt)
    line = refused(*cli_args("test", ckpt, real_data_dir, real_archive))
    assert hostile.module in line and "--trusted" in line
    assert not hostile.marker.exists()


@pytest.mark.parametrize("subcommand", ["fit", "validate", "predict"])
def test_every_subcommand_refuses_before_lightning_parses_the_hyperparameters(
    subcommand, hostile, refused, real_data_dir, real_archive
):
    ckpt = hostile.craft(NAMES["optimizer"])  # the network's name alone would also fail the same-network check
    assert f"{hostile.module}.Opt" in refused(*cli_args(subcommand, ckpt, real_data_dir, real_archive))
    assert not hostile.marker.exists() and not (Path("lightning_logs") / "version_0").exists()


def test_the_command_line_compares_the_whole_name_not_its_last_part(hostile, refused, real_data_dir, real_archive):
    # a class that ends like the config's network, from another module: the check once compared "SeedNet" only
    ckpt = hostile.craft(hp(network={"class_path": "{m}.SeedNet", "init_args": {}}))
    line = refused(*cli_args("test", ckpt, real_data_dir, real_archive))
    assert f"{hostile.module}.SeedNet" in line and not hostile.marker.exists()


def test_export_report_and_the_teacher_read_only_data(hostile, capsys, real_data_dir, real_archive):
    from cifar_lightning.inference import export
    from cifar_lightning.tools import report

    ckpt = hostile.craft(NAMES["network"])
    with pytest.raises(SystemExit):
        export.main(["--config", CONFIG, "--ckpt_path", str(ckpt), "--out", "exported"])
    assert f"{hostile.module}.Net" in capsys.readouterr().err and not Path("exported").exists()
    # the teacher's checkpoint gives weights only, into the teacher the config built
    teacher = Distillation(SeedNet(), str(ckpt))
    teacher.load_teacher(torch.device("cpu"), channels_last=False)
    run = Path("run")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(ckpt.read_bytes())
    assert report.checkpoint_facts(run)["network"].endswith("SeedNet")  # the report reads names as text
    assert not hostile.marker.exists()


def test_a_trusted_class_is_imported_and_loads(hostile, refused, real_data_dir, real_archive):
    def edit(checkpoint, module):
        hp(network={"class_path": "{m}.Net", "init_args": {}})(checkpoint, module)
        checkpoint["network_class"] = f"{module}.Net"

    ckpt = hostile.craft(edit)
    model = cifar_lightning.load(ckpt, trusted=[f"{hostile.module}.Net"])
    assert type(model.network).__qualname__ == "Net" and hostile.marker.exists()
    hostile.marker.unlink()
    # on the command line the config names SeedNet: trusting the other class does not make it the same one
    line = refused(*cli_args("test", ckpt, real_data_dir, real_archive), f"--trusted+={hostile.module}.Net")
    assert f"holds a {hostile.module}.Net but the config builds a {SEED}" in line


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# values that would make a loader allocate far more than the checkpoint's weights, or act on them
ALLOCATIONS = {
    # a 10^9-class head: 48 x 10^9 floats (192 GB) if built for real
    "network init_args": (
        hp(network={"class_path": SEED, "init_args": {"num_classes": 10**9}}),
        "do not fit the network",
    ),
    # the confusion matrix is num_classes^2 integers (8 PB)
    "num_classes": (hp(num_classes=10**9), "num_classes"),
    "class names": (hp(class_names=["a", "b"]), "class_names"),
    # 20,000 names: jsonargparse's per-element deep copy made a 5.5 MB checkpoint take minutes (quadratic)
    "20,000 classes": (
        lambda c, m: c["preprocessing"].update(class_names=[f"c{i}" for i in range(20_000)]),
        "class_names must be a list of 2 to 1,000 names",
    ),
    "input size": (lambda c, m: c["preprocessing"].update(input_size=[10**6, 10**6]), "input_size"),
    "mean": (lambda c, m: c["preprocessing"].update(mean=[0.5]), "mean"),
    "std": (lambda c, m: c["preprocessing"].update(std=[0.2, 0.0, 0.2]), "std"),
    "a weight of another shape": (
        lambda c, m: c["state_dict"].update({"network.classifier.weight": torch.zeros(10, 7)}),
        "classifier.weight",
    ),
    "a missing weight": (
        lambda c, m: c["state_dict"].pop("network.classifier.bias"),
        "missing network|missing classifier.bias",
    ),
    "hyper_parameters not a mapping": (
        lambda c, m: c.update(hyper_parameters=["x"]),
        "not settings|carries no network",
    ),
    "init_args not a mapping": (hp(network={"class_path": SEED, "init_args": "x"}), "init_args"),
    "a class_path that is not text": (hp(network={"class_path": ["x"]}), "not a class name"),
    "an instantiator that is not text": (hp(_instantiator=["x"]), "not a class name"),
    "an init_arg of the wrong kind": (
        hp(network={"class_path": SEED, "init_args": {"num_classes": "ten"}}),
        "cannot be built",
    ),
    "a setting beside the network": (
        hp(network={"class_path": SEED, "init_args": {"depth": 10**9}}),
        "cannot be built",
    ),
}


@pytest.mark.parametrize("case", ALLOCATIONS)
def test_a_hostile_value_is_refused_before_real_memory_is_used(case, hostile):
    edit, named = ALLOCATIONS[case]
    ckpt = hostile.craft(edit)
    before = peak_rss_mb()
    for load in (cifar_lightning.load, ImageClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError, match=named):
            load(ckpt)
    assert peak_rss_mb() - before < 200  # the refusal came before any allocation of that size


def monitored_checkpoint_state(checkpoint: dict) -> dict:
    return next(s for k, s in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint") and s["monitor"])


def delete_on_resume(path: str):
    """The monitored ModelCheckpoint's state as a resumed fit in ./lightning_logs/version_0 would keep it, naming
    ``path`` as the top-k file that the next, better epoch replaces and deletes."""

    def edit(checkpoint, module):
        monitored_checkpoint_state(checkpoint).update(
            dirpath="./lightning_logs/version_0/checkpoints",
            best_k_models={path: torch.tensor(0.0)},
            kth_best_model_path=path,
            kth_value=torch.tensor(0.0),
            best_model_score=torch.tensor(0.0),
            best_model_path=path,
        )

    return edit


# values a Trainer would act on when resuming
TRAINER_STATE = {
    # a resumed ModelCheckpoint deletes the top-k file its state names when a better epoch replaces it; Lightning
    # refuses a file outside its folder, but compares paths without resolving ".."
    "a file outside its folder": (
        delete_on_resume("./lightning_logs/version_0/checkpoints/../../../victim.txt"),
        "not a .ckpt file in its own folder",
    ),
    "a remote file": (delete_on_resume("s3://bucket/victim.ckpt"), "not a .ckpt file in its own folder"),
    "random states": (lambda c, m: c["callbacks"]["RandomState"].update(torch=torch.zeros(3)), "random states"),
    "the data's seed": (lambda c, m: c["ImageDataModule"].update(shuffle_seed="seed"), "shuffle_seed"),
    "the data's statistics": (lambda c, m: c["ImageDataModule"].update(mean=[0.5, 0.5]), "mean"),
    "the data's state": (lambda c, m: c.update(ImageDataModule="x"), "data state is a str"),
    "the loop state": (lambda c, m: c.update(loops="x"), "loop state"),
    "a loop": (lambda c, m: c["loops"].update(fit_loop=5), "loop state"),
    # the epoch a resumed fit runs seeds its data order
    "a loop counter": (
        lambda c, m: c["loops"]["fit_loop"]["epoch_progress"]["current"].update(processed="x"),
        "loop counter",
    ),
    "an optimizer state of another shape": (
        lambda c, m: c["optimizer_states"][0]["state"][0].update(momentum_buffer=torch.zeros(3)),
        "momentum_buffer",
    ),
    "an optimizer state for fewer parameters": (
        lambda c, m: c["optimizer_states"][0]["param_groups"][0].update(params=[0]),
        "covers 1 parameters",
    ),
    "an optimizer state that is not one": (lambda c, m: c.update(optimizer_states="x"), "optimizer state"),
    "a tensor beside the network's": (
        lambda c, m: c["state_dict"].update({"other.weight": torch.zeros(2)}),
        "unexpected other.weight",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", TRAINER_STATE)
def test_a_hostile_trainer_state_is_one_line_before_training(case, hostile, refused, real_data_dir, real_archive):
    edit, named = TRAINER_STATE[case]

    def resumable(checkpoint, module):
        # as if the tiny fit (one epoch of 3 steps) were the first half of a 2-epoch run: --trainer.max_epochs=2 resumes it
        checkpoint["lr_schedulers"][0]["total_steps"] = 6
        edit(checkpoint, module)

    victim = Path("victim.txt")
    victim.write_text("a file of the user's")
    ckpt = hostile.craft(resumable)
    assert named in refused(*cli_args("fit", ckpt, real_data_dir, real_archive), "--trainer.max_epochs=2")
    assert victim.read_text() == "a file of the user's"
    assert not Path("lightning_logs/version_0").exists()  # the claimed folder went with the refusal


@pytest.mark.slow
def test_a_distilled_checkpoints_teacher_is_checked_against_its_own_weights(
    hostile, refused, real_data_dir, real_archive
):
    teacher_ckpt = hostile.craft(lambda c, m: None)
    # the teacher's init_args would build a network 10^9 classes wide; its checkpoint holds a 10-class one
    spec = {
        "class_path": "cifar_lightning.training.distillation.Distillation",
        "init_args": {
            "teacher": {"class_path": SEED, "init_args": {"num_classes": 10**9}},
            "checkpoint": str(teacher_ckpt),
        },
    }
    ckpt = hostile.craft(hp(distillation=spec))
    assert "do not fit the distillation teacher" in refused(
        *cli_args("fit", ckpt, real_data_dir, real_archive), "--trainer.max_epochs=2"
    )
    # evaluation leaves the teacher out, and loading for inference builds none
    model = ImageClassifier.load_from_checkpoint(ckpt)
    assert model.distillation is None


def recompressed(path: Path, extra: dict[str, bytes] | None = None) -> Path:
    """``path`` zipped again with deflate, as a hand-edited checkpoint would be, with ``extra`` members added."""
    import zipfile

    out = path.with_name(f"zipped-{path.name}")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member))
        for name, data in (extra or {}).items():
            target.writestr(name, data)
    return out


def test_a_small_file_that_unpacks_to_gigabytes_is_refused_before_it_is_loaded(
    hostile, monkeypatch, refused, real_data_dir, real_archive
):
    # found by trying: a 1 GB zero tensor under an unknown key, re-zipped, was 2.5 MB and grew memory by 1,083 MB
    from cifar_lightning.runs import checkpoints

    plain = hostile.craft(lambda c, m: None)
    zipped = recompressed(plain)
    assert zipped.stat().st_size < plain.stat().st_size
    before = peak_rss_mb()
    for load in (cifar_lightning.load, ImageClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError, match="re-compressed"):
            load(zipped)
    assert "re-compressed" in refused(*cli_args("test", zipped, real_data_dir, real_archive))
    # stored as torch stores it, but more than a checkpoint of these networks needs
    monkeypatch.setattr(checkpoints, "MAX_CHECKPOINT_BYTES", plain.stat().st_size // 2)
    with pytest.raises(CheckpointError, match="unpacks to .* MB"):
        cifar_lightning.load(hostile.craft(lambda c, m: None))
    assert peak_rss_mb() - before < 200


def test_settings_nested_thousands_deep_are_one_line(hostile, refused, real_data_dir, real_archive):
    # found by trying: 5,000 levels gave RecursionError tracebacks from test and load
    def deep(checkpoint, module):
        value: dict = {}
        for _ in range(5000):
            value = {"x": value}
        checkpoint["hyper_parameters"]["label_smoothing"] = value

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50_000)  # torch.save pickles recursively
    try:
        ckpt = hostile.craft(deep)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(CheckpointError, match="nests its settings more than"):
        cifar_lightning.load(ckpt)
    assert "nests its settings" in refused(*cli_args("test", ckpt, real_data_dir, real_archive))


def test_test_reads_the_checkpoint_file_once(finished_run, real_data_dir, real_archive, monkeypatch, tmp_path):
    import shutil

    from cifar_lightning.lightning_cli import run_cli

    ckpt = Path(shutil.copy(finished_run / "lightning_logs/version_0/checkpoints/last.ckpt", tmp_path / "model.ckpt"))
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: loads.append(str(f)) or real_load(f, *a, **k))
    monkeypatch.chdir(tmp_path)
    run_cli(cli_args("test", ckpt, real_data_dir, real_archive))
    assert loads == [str(ckpt)]


def test_non_finite_weights_are_refused_at_load_naming_the_tensor(hostile, refused, real_data_dir, real_archive):
    # found by trying: NaN weights made predict write nan for every class, with exit 0, and export shipped them
    def diverged(checkpoint, module):
        checkpoint["state_dict"]["network.classifier.weight"][0, 0] = float("nan")

    ckpt = hostile.craft(diverged)
    for load in (cifar_lightning.load, ImageClassifier.load_from_checkpoint):
        with pytest.raises(CheckpointError, match="weight network.classifier.weight holds NaN or infinite values"):
            load(ckpt)
    for subcommand in ("predict", "test"):
        assert "holds NaN or infinite" in refused(*cli_args(subcommand, ckpt, real_data_dir, real_archive))


def test_a_huge_value_in_a_checkpoint_gives_a_bounded_line(hostile, refused, real_data_dir, real_archive):
    # found by trying: a 20 MB string in the network's init_args gave a 20 MB error line
    from cifar_lightning.errors import MAX_LINE

    ckpt = hostile.craft(hp(network={"class_path": SEED, "init_args": {"num_classes": "A" * 20_000_000}}))
    line = refused(*cli_args("test", ckpt, real_data_dir, real_archive))
    assert len(line) <= MAX_LINE and "AAAA" in line
