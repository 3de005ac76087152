"""Nothing read from a file selects code to import or run (issue 17, part 1).

The attack: a ``segmenter.pt`` that holds only strings and tensors (so ``weights_only=True`` loads it) naming the
backbone ``subprocess:run`` with kwargs ``{"args": "<shell command>", "shell": true}``. Before the fix the
registry imported ``subprocess.run`` and called it with the file's kwargs. Each test plants a sentinel the
command would create and checks that it never appears.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import data_fakes
from model_fakes import subprocess_env
from rtsseg.checkpoint import save_checkpoint
from rtsseg.errors import CheckpointError
from rtsseg.models import build_backbone, register_command_line_backbone
from rtsseg.seg.decoders import make_decoder
from rtsseg.seg.train import SEGMENTER_FORMAT, load_segmenter, save_segmenter


def _crafted(path, sentinel, backbone_name="subprocess:run", kwargs=None, decoder=None):
    """A segmentation checkpoint of strings only, as an attacker would write it."""
    kwargs = {"args": f"touch {sentinel}", "shell": True} if kwargs is None else kwargs
    decoder = decoder or {"kind": "linear", "in_dims": [8], "num_classes": 11}
    save_checkpoint({"format": SEGMENTER_FORMAT, "backbone_name": backbone_name,
                     "backbone_kwargs_json": json.dumps(kwargs), "backbone_state": {},
                     "decoder_config_json": json.dumps(decoder), "decoder_state": {}, "vit_blocks": None,
                     "config_json": json.dumps({"dataset": "camvid", "input_size": [16, 24]})}, path)
    return path


@pytest.mark.slow
def test_crafted_checkpoint_is_refused_by_rtsseg_evaluate_and_runs_nothing(tmp_path):
    sentinel = tmp_path / "PWNED"
    ck = _crafted(tmp_path / "segmenter.pt", sentinel)
    data = data_fakes.make_camvid(tmp_path / "CamVid")
    proc = subprocess.run([sys.executable, "-m", "rtsseg.cli", "evaluate", "--checkpoint", str(ck), "--data",
                           str(data), "--split", "val"], capture_output=True, text=True, timeout=120,
                          env=subprocess_env())
    assert not sentinel.exists(), "the checkpoint ran its command"
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "'subprocess:run'" in lines[0] and "not a registered backbone" in lines[0] and str(ck) in lines[0]
    assert "Fix:" in lines[0]


def test_registered_backbone_with_file_kwargs_that_are_not_sizes_is_refused(tmp_path):
    # timm's create_model(checkpoint_path=...) would read (unpickle) another file named by this one
    ck = _crafted(tmp_path / "a.pt", tmp_path / "x", "vit_small64", {"checkpoint_path": str(tmp_path / "evil.pth")})
    with pytest.raises(CheckpointError, match="checkpoint_path"):
        load_segmenter(ck)
    ck = _crafted(tmp_path / "b.pt", tmp_path / "x", "vit_small64", {"img_size": "64; rm -rf /"})
    with pytest.raises(CheckpointError, match="img_size"):
        load_segmenter(ck)


@pytest.mark.slow
def test_decoder_kind_from_a_file_is_a_known_kind_or_refused(tmp_path):
    bb = build_backbone("vit_small64", img_size=64, depth=1)
    good = save_segmenter(tmp_path / "good.pt", bb, {"img_size": 64, "depth": 1},
                          make_decoder("linear", [192], 11, 6), {"dataset": "camvid", "input_size": [16, 24]})
    state = torch.load(good, weights_only=True)
    for bad in ({"kind": "os:system", "command": "touch x"}, {"kind": "linear", "in_dims": [192], "num_classes": 11,
                                                                "evil": 1}):
        state["decoder_config_json"] = json.dumps(bad)
        save_checkpoint(state, tmp_path / "bad.pt")
        with pytest.raises(CheckpointError, match="decoder"):
            load_segmenter(tmp_path / "bad.pt")


def test_save_segmenter_refuses_kwargs_it_could_not_read_back(tmp_path):
    bb = build_backbone("vit_small64", img_size=64, depth=1)
    with pytest.raises(ValueError, match="pretrained"):
        save_segmenter(tmp_path / "s.pt", bb, {"pretrained": True}, make_decoder("linear", [192], 11, 6), {})


def test_build_backbone_never_imports_a_module_callable_name(tmp_path, monkeypatch):
    sentinel = tmp_path / "PWNED"
    with pytest.raises(KeyError, match="never from a file"):
        build_backbone("subprocess:run", args=f"touch {sentinel}", shell=True)
    assert not sentinel.exists()
    # the command line (and only it) may name a factory explicitly; then the name is registered in this process
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "my_factories.py").write_text(
        "from model_fakes import TinyBackbone\n"
        "def tiny(**kw):\n    return TinyBackbone(**kw)\n")
    assert register_command_line_backbone("my_factories:tiny") == "my_factories:tiny"
    assert build_backbone("my_factories:tiny").embed_dim == 16
    with pytest.raises(KeyError, match="cannot import"):
        register_command_line_backbone("no_such_module_xyz:f")


@pytest.mark.slow
def test_pretrain_command_line_with_a_factory_that_does_not_import_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "rtsseg.cli", "pretrain", "--backbone", "no_such_module_xyz:f",
                           "--data", "synthetic", "--run-parent", str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env=subprocess_env())
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(proc.stderr.strip().splitlines()) == 1 and "cannot import" in proc.stderr
