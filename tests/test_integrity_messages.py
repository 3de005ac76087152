"""Issue 17 (integrity): what a user gets wrong, or a machine runs out of, is one line naming the file or
parameter and the fix, never a raw traceback; and ``rtsseg run -p`` says which steps an override reaches."""

from __future__ import annotations

import errno
import os
import types
from pathlib import Path

import pytest
import torch

from rtsseg import checkpoint, cli, pipeline, rundir
from rtsseg.checkpoint import DAMAGED_FIX, load_checkpoint, save_checkpoint
from rtsseg.errors import CheckpointError, DiskFullError, NotWritableError
from rtsseg.params import NotebookParameterError, declared_parameters, override_reach, validate_parameters
from rtsseg.profiles import STEPS

UNWRITABLE_FIX = "Fix: make it writable, or set RTSSEG_RUNS to a writable folder"
FULL_FIX = "Fix: free space or set RTSSEG_RUNS to a folder on another disk"
TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 4672 vs 4566"


def _refuse_writes_below(monkeypatch, folder: Path) -> None:
    """Tests run as root, for whom chmod blocks nothing: ``mkdir`` below ``folder`` fails as on a read-only disk."""
    real = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self == folder or folder in self.parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)


def _pretrain_args(run_parent: Path) -> list[str]:
    return ["pretrain", "--backbone", "tiny_test", "--data", "synthetic", "--synthetic-images", "16",
            "--batch-size", "8", "--epochs", "1", "--projector-dims", "8", "8", "--device", "cpu", "--no-progress",
            "--run-parent", str(run_parent)]


# ---- a: read-only runs folder ---------------------------------------------------------------------------------

def test_pretrain_into_a_read_only_runs_folder_is_one_line(tmp_path, monkeypatch, capsys):
    from model_fakes import register_fakes

    register_fakes()
    ro = tmp_path / "ro"
    ro.mkdir()
    _refuse_writes_below(monkeypatch, ro)
    code = cli.main(_pretrain_args(ro / "runs"))
    err = capsys.readouterr().err
    assert code == 1
    assert err == f"rtsseg pretrain: error: cannot write to {ro} (Permission denied). {UNWRITABLE_FIX}\n"


def test_open_run_names_the_folder_when_the_lock_or_config_cannot_be_written(tmp_path, monkeypatch):
    def no_open(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(rundir, "open", no_open, raising=False)  # the lock file
    with pytest.raises(NotWritableError) as info:
        rundir.open_run(tmp_path / "p", {"a": 1}, "code")
    run_path = rundir.Run(tmp_path / "p", {"a": 1}, "code").path
    assert str(info.value) == f"cannot write to {run_path} (Permission denied). {UNWRITABLE_FIX}"
    with pytest.raises(NotWritableError, match=f"cannot write to {tmp_path / 'q'} "):
        with rundir.exclusive(tmp_path / "q"):
            pass
    monkeypatch.undo()

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", full)  # config.json
    with pytest.raises(DiskFullError, match="no space left on the device holding"):
        rundir.open_run(tmp_path / "p", {"a": 1}, "code")
    monkeypatch.undo()
    with rundir.open_run(tmp_path / "p", {"a": 1}, "code") as run:  # the failed opener released the lock
        assert run.path == run_path


# ---- b: full disk while saving a checkpoint -------------------------------------------------------------------

@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(TORCH_FULL)])
def test_full_disk_while_saving_is_one_line_and_leaves_no_temp_file(tmp_path, monkeypatch, failure):
    target = save_checkpoint({"w": torch.ones(2)}, tmp_path / "checkpoint.pt")
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise failure

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(DiskFullError) as info:
        save_checkpoint({"w": torch.zeros(2)}, target)
    assert str(info.value) == f"no space left on the device holding {target}. {FULL_FIX}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # the temporary file is gone
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.equal(load_checkpoint(target)["w"], torch.ones(2))  # the older checkpoint is untouched


def test_other_save_failures_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def fails(obj, f, *args, **kwargs):
        raise RuntimeError("something else")

    monkeypatch.setattr(torch, "save", fails)
    with pytest.raises(RuntimeError, match="something else") as info:
        save_checkpoint({}, tmp_path / "c.pt")
    assert not isinstance(info.value, DiskFullError)
    # 1 MiB left on the device: the same failure is a full disk
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: types.SimpleNamespace(free=1 << 20))
    with pytest.raises(DiskFullError):
        save_checkpoint({}, tmp_path / "c.pt")
    assert list(tmp_path.iterdir()) == []


def test_pretrain_on_a_full_disk_is_one_line(tmp_path, monkeypatch, capsys):
    from model_fakes import register_fakes

    register_fakes()
    real_save = torch.save

    def full(obj, f, *args, **kwargs):  # the disk fills up while the checkpoint is written
        if not isinstance(f, (str, os.PathLike)):  # save_checkpoint's temporary file (monitors pass a path)
            raise RuntimeError(TORCH_FULL)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    code = cli.main(_pretrain_args(tmp_path / "runs"))
    err = capsys.readouterr().err  # the epoch log lines, then the error
    assert code == 1 and "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert last.startswith("rtsseg pretrain: error: no space left on the device holding ")
    assert last.endswith(f"checkpoint.pt. {FULL_FIX}")


# ---- c: evaluate --device -------------------------------------------------------------------------------------

def _evaluate(capsys, device: str, checkpoint_path: Path) -> tuple[int, str]:
    code = cli.main(["evaluate", "--checkpoint", str(checkpoint_path), "--data", str(checkpoint_path.parent),
                     "--split", "val", "--device", device])
    return code, capsys.readouterr().err


def test_evaluate_on_a_device_this_machine_lacks_is_one_line(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "segmenter.pt"  # the device is checked first: this file is never opened
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _evaluate(capsys, "cuda", missing) == (
        2, "rtsseg evaluate: error: --device cuda: this machine has no CUDA GPU. Fix: --device cpu\n")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    code, err = _evaluate(capsys, "cuda:3", missing)
    assert code == 2 and "--device cuda:3: this machine has 1 CUDA GPU(s)" in err and "Fix: --device cuda:0" in err
    code, err = _evaluate(capsys, "gpu", missing)
    assert code == 2 and err == ("rtsseg evaluate: error: --device gpu: not a device. Fix: --device cpu, "
                                 "--device cuda or --device cuda:N\n")
    code, err = _evaluate(capsys, "meta", missing)
    assert code == 2 and "--device meta: evaluation runs on cpu, cuda or mps" in err
    code, err = _evaluate(capsys, "cpu", missing)
    assert code == 2 and "no checkpoint" in err  # a valid device goes on to the checkpoint


# ---- d: a file that is no checkpoint --------------------------------------------------------------------------

def test_a_text_file_is_named_as_not_a_pytorch_checkpoint(tmp_path, capsys):
    text = tmp_path / "history.csv"
    text.write_text("epoch,loss\n1,2.5\n")
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(text)
    message = str(info.value)
    assert "not a PyTorch checkpoint" in message and "restart training" not in message and "\n" not in message
    assert message.endswith("Fix: pass a file written by torch.save (a checkpoint.pt or segmenter.pt), not a text "
                            "or image file")
    with pytest.raises(CheckpointError, match="Fix: pass a segmenter.pt$"):
        load_checkpoint(text, fix="pass a segmenter.pt")
    code, err = _evaluate(capsys, "cpu", text)  # as the user meets it
    assert code == 2 and "not a PyTorch checkpoint" in err and err.count("\n") == 1


def test_a_damaged_checkpoint_gets_a_fix_that_fits_every_use(tmp_path):
    damaged = tmp_path / "segmenter.pt"
    damaged.write_bytes(b"PK\x03\x04" + b"\x00" * 64)  # a zip header, then nothing a zip reader accepts
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(damaged)
    assert str(info.value).endswith(f"Fix: {DAMAGED_FIX}") and "restart training" not in str(info.value)
    with pytest.raises(CheckpointError, match="Fix: retrain the decoder$"):
        load_checkpoint(damaged, fix="retrain the decoder")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty file \(0 bytes\)"):
        load_checkpoint(tmp_path / "empty.pt")
    with rundir.open_run(tmp_path / "runs", {"a": 1}, "code") as run:  # a run's own checkpoint: restart it
        run.checkpoint.write_bytes(b"PK\x03\x04" + b"\x00" * 64)
        with pytest.raises(CheckpointError, match="Fix: restart this run"):
            run.load()


# ---- e: empty lists of notebook parameters ---------------------------------------------------------------------

def test_empty_seed_backbone_init_and_lr_lists_are_refused_naming_the_parameter():
    declared = {"seeds": [0, 1, 2], "other_seeds": [0], "backbones": ["vit_small64"], "inits": None,
                "lrs": [5e-3], "attention_loss_weights": [0.1]}
    for name in ("seeds", "other_seeds", "backbones", "inits", "lrs"):
        with pytest.raises(NotebookParameterError, match=rf"nb.py: parameter {name}=\[\] must not be empty\. Fix:"):
            validate_parameters("notebooks/nb.py", declared, {name: []})
    with pytest.raises(NotebookParameterError, match=r"e\.g\. seeds=\[0\]"):
        validate_parameters("nb.py", declared, {"seeds": []})
    validate_parameters("nb.py", declared, {"inits": None, "attention_loss_weights": [], "seeds": [3]})


def test_rtsseg_run_with_empty_seeds_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))
    code = cli.main(["run", "--profile", "smoke", "--step", "02", "-p", "seeds=[]", "--no-book"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "parameter seeds=[] must not be empty" in err


# ---- f: the refusal of a gpu profile without CUDA says what that profile is ----------------------------------

def test_gpu_refusal_is_true_per_profile(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    texts = {}
    for profile in ("gpu", "gpu-short"):
        with pytest.raises(pipeline.RunRefused) as info:
            pipeline.preflight(profile)
        texts[profile] = text = str(info.value)
        assert "this machine has no CUDA GPU" in text and "Fix: --profile cpu, or --allow-cpu" in text
    short = texts["gpu-short"]
    assert "vit_s8_64 at 64 px" in short and "8 minutes of one H100" in short and "1 seed" in short
    assert "224 px" not in short and "full-size" not in short and "9.5 days" not in short
    assert "vit_s16, swin_t, botnet50 at 224 px" in texts["gpu"] and "full-size configuration" in texts["gpu"]


# ---- 3: rtsseg run -p says which steps it reaches --------------------------------------------------------------

def _declared(names=None):
    return {s.name: declared_parameters(pipeline.read_notebook(s), s.source) for s in STEPS
            if names is None or s.name in names}


def test_override_reach_names_every_step_that_declares_the_parameter():
    reach = override_reach(_declared(), {"epochs": 4, "n_boot": 10})
    assert reach == {"epochs": ["02_pretrain_barlow_twins", "03_pretrain_dino", "04_supervised_baseline",
                                "07_segmentation"], "n_boot": ["05_attention_maps"]}
    only = _declared({"02_pretrain_barlow_twins", "05_attention_maps"})
    assert override_reach(only, {"epochs": 4}) == {"epochs": ["02_pretrain_barlow_twins"]}
    with pytest.raises(NotebookParameterError, match=r"override\(s\) \['n_examples'\] match no parameter") as info:
        override_reach(only, {"n_examples": 2, "epochs": 4})  # declared by 01 only, which is not selected
    assert "Fix: use one of" in str(info.value) and "'epochs'" in str(info.value) and "--step" in str(info.value)
    with pytest.raises(NotebookParameterError, match="chosen by --profile"):
        override_reach(only, {"profile": "gpu"})


def test_run_prints_the_reach_of_each_override_before_running(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path))

    class Stop(Exception):
        pass

    def no_run(profile):
        raise Stop  # nothing runs: the lines must be out before the lock is taken

    monkeypatch.setattr(pipeline, "profile_lock", no_run)
    with pytest.raises(Stop):
        pipeline.run_profile("smoke", overrides={"epochs": 4, "n_boot": 10})
    out = capsys.readouterr().out.splitlines()
    assert ("[rtsseg] -p epochs=4 applies to 02_pretrain_barlow_twins, 03_pretrain_dino, 04_supervised_baseline, "
            "07_segmentation") in out
    assert "[rtsseg] -p n_boot=10 applies to 05_attention_maps" in out
    code = cli.main(["run", "--profile", "smoke", "--step", "05", "-p", "epochs=4", "--no-book"])
    err = capsys.readouterr().err
    assert code == 2 and "['epochs'] match no parameter of the steps ['05_attention_maps']" in err


def test_run_help_says_what_an_override_reaches(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "applies to every selected step that declares KEY" in help_text and "is refused" in help_text
    # the example in the help is what the notebooks declare
    assert "epochs reaches 02, 03, 04 and 07" in help_text
    reached = override_reach(_declared(), {"epochs": 1})["epochs"]
    assert [s.split("_", 1)[0] for s in reached] == ["02", "03", "04", "07"]
