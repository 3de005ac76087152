"""Supervised trainer: augmentations move boxes with the pixels, run identity, exact resume, val top-1, and the
attention-supervision loss wired into the training step."""

from __future__ import annotations

import csv
import importlib
import importlib.util
from types import SimpleNamespace

import pytest
import torch

import rtsseg.ssl.attention_supervised as att
import rtsseg.ssl.method as method_module
from model_fakes import register_fakes
from rtsseg.checkpoint import load_checkpoint
from rtsseg.rundir import latest_run
from rtsseg.ssl.supervised import SupervisedConfig, pad_crop_flip, random_resized_crop_flip, train_supervised

register_fakes()


def tiny_data(n: int = 32, size: int = 16, seed: int = 0) -> SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    boxes = torch.tensor([[2.0, 3.0, 12.0, 10.0]]).repeat(n, 1)
    return SimpleNamespace(images=images, labels=labels, boxes=boxes, classes=["a", "b", "c", "d"])


def config(parent, **kw) -> SupervisedConfig:
    base = dict(backbone="tiny_test", image_size=16, epochs=2, batch_size=16, lr=1e-2, warmup_epochs=1,
                device="cpu", run_parent=str(parent), progress=False, amp="none", val_per_class=0)
    return SupervisedConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------ augmentation
def _box_image(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B,3,size,size]: white on the box's pixels (inclusive x0..x1, y0..y1), black elsewhere."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    inside = [(xx >= b[0]) & (xx <= b[2]) & (yy >= b[1]) & (yy <= b[3]) for b in boxes]
    return (torch.stack(inside)[:, None].expand(-1, 3, -1, -1) * 255).to(torch.uint8)


def _white_extent(img: torch.Tensor) -> torch.Tensor:
    """x0,y0,x1,y1 (inclusive indices) of the pixels brighter than half in a float [3,H,W] image."""
    m = img[0] > 0.5
    ys, xs = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
    return torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()], dtype=torch.float32)


@pytest.mark.parametrize("kind", ["rrc", "padcrop"])
def test_augmented_boxes_follow_the_pixels(kind):
    size = 32
    # boxes more than `pad` px from the border: reflect padding would mirror an object touching it
    boxes = torch.tensor([[5.0, 6.0, 19.0, 17.0], [10.0, 5.0, 25.0, 25.0], [5.0, 5.0, 11.0, 25.0]] * 8)
    images = _box_image(boxes, size)
    g = torch.Generator().manual_seed(3)
    if kind == "rrc":
        out, moved = random_resized_crop_flip(images, size, g, scale=(0.5, 1.0), boxes=boxes)
    else:
        out, moved = pad_crop_flip(images, g, pad=4, size=size, boxes=boxes)
    checked = 0
    for img, box in zip(out, moved):
        if not torch.isfinite(box).all():
            assert (img[0] > 0.5).sum() <= 2 * size  # nothing (or a sliver at the border) left of the box
            continue
        assert torch.allclose(_white_extent(img), box, atol=1.6), (kind, box)
        checked += 1
    assert checked >= 20
    if kind == "padcrop":  # no resize: integer shifts and mirror flips are exact
        for img, box in zip(out, moved):
            if torch.isfinite(box).all():
                assert torch.equal(_white_extent(img), box)


def test_crop_flip_identities():
    x = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    same = random_resized_crop_flip(x, 8, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=0.0)
    assert torch.allclose(same, x.float() / 255, atol=1e-5)
    flipped = random_resized_crop_flip(x, 8, g, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_p=1.0)
    assert torch.allclose(flipped, x.float().flip(-1) / 255, atol=1e-5)
    assert torch.equal(pad_crop_flip(x, g, pad=0, flip_p=0.0), x.float() / 255)
    assert torch.equal(pad_crop_flip(x, g, pad=0, flip_p=1.0), x.float().flip(-1) / 255)
    a = pad_crop_flip(x, torch.Generator().manual_seed(1), pad=4)
    assert a.shape == (3, 3, 8, 8) and torch.equal(a, pad_crop_flip(x, torch.Generator().manual_seed(1), pad=4))


# -------------------------------------------------------------------------------------------- training
def test_run_writes_a_reloadable_checkpoint_history_and_val_top1(tmp_path):
    data, val = tiny_data(), tiny_data(8, seed=1)
    run = train_supervised(config(tmp_path, epochs=1, augment="padcrop"), data=data, val_data=val)
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["epoch"] == 1 and state["num_classes"] == 4 and state["config"]["augment"] == "padcrop"
    from model_fakes import TinyBackbone

    TinyBackbone().load_state_dict(state["backbone"])  # strict: the keys are the backbone's own
    rows = list(csv.DictReader(open(run / "history.csv")))
    assert len(rows) == 1 and 0 <= float(rows[0]["val_top1"]) <= 1 and float(rows[0]["loss"]) > 0
    assert latest_run(tmp_path) == run


def test_changed_config_retrains_and_unchanged_rerun_skips(tmp_path):
    data = tiny_data()
    first = train_supervised(config(tmp_path, epochs=1), data=data)
    stamp = (first / "checkpoint.pt").stat().st_mtime_ns
    assert train_supervised(config(tmp_path, epochs=1, progress=True), data=data) == first
    assert (first / "checkpoint.pt").stat().st_mtime_ns == stamp
    for change in (dict(lr=5e-3), dict(seed=1), dict(batch_size=8), dict(augment="padcrop"), dict(epochs=2)):
        assert train_supervised(config(tmp_path, **change), data=data) != first, change


# the killed half runs in a child python (SIGKILL from the engine's fault hook); its data and, for the control, the
# fake attention parts come from this module (tests/ is on the child's PYTHONPATH)
_KILLED = """
import sys
import rtsseg.ssl.attention_supervised as att
import test_ssl_supervised as t
att._attention_parts = lambda: (t._FakeRecorder, t._fake_box_loss, t._fake_box_loss)
kw = dict(attn_loss_weight=5.0, attn_loss_heads=(0,)) if sys.argv[2] == "attention-supervised" else {}
t.train_supervised(t.config(sys.argv[1], epochs=3, fault_at_step=3, **kw), data=t.tiny_data())
"""


@pytest.mark.slow
@pytest.mark.parametrize("method", ["supervised", "attention-supervised"])
def test_killed_run_resumes_to_identical_weights(tmp_path, monkeypatch, method):
    import signal
    import subprocess
    import sys

    from model_fakes import subprocess_env

    monkeypatch.setattr(att, "_attention_parts", lambda: (_FakeRecorder, _fake_box_loss, _fake_box_loss))
    kw = dict(attn_loss_weight=5.0, attn_loss_heads=(0,)) if method == "attention-supervised" else {}
    data = tiny_data()  # 32 images / batch 16: 2 steps per epoch; step 3 is mid-epoch 2, the checkpoint at step 2
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path / "b"), method], capture_output=True,
                          text=True, timeout=120, env=subprocess_env())
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    (killed,) = [p.parent for p in (tmp_path / "b").glob("*/checkpoint.pt")]
    assert load_checkpoint(killed / "checkpoint.pt")["step"] == 2
    assert len((killed / "steps.csv").read_text().strip().splitlines()) == 1 + 3
    resumed = train_supervised(config(tmp_path / "b", epochs=3, **kw), data=data)
    straight = train_supervised(config(tmp_path / "a", epochs=3, **kw), data=data)
    assert resumed == killed and straight.name == killed.name  # fault_at_step is not part of the identity
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(resumed / "checkpoint.pt")
    assert b["epoch"] == 3 and b["method"] == method
    for key in ("backbone", "classifier"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(b["optimizer"]["state"][k]["exp_avg"], v["exp_avg"])
    assert (straight / "steps.csv").read_text() == (resumed / "steps.csv").read_text()
    ha, hb = (list(csv.DictReader(open(r / "history.csv"))) for r in (straight, resumed))
    assert len(ha) == 3 and [{k: v for k, v in r.items() if k != "wall_s"} for r in ha] == [
        {k: v for k, v in r.items() if k != "wall_s"} for r in hb]
    if method == "attention-supervised":
        assert all(float(r["attn_loss"]) > 0 for r in ha)


def test_bad_input_fails_naming_the_problem(tmp_path):
    bad = SimpleNamespace(images=torch.zeros(4, 16, 16, dtype=torch.uint8), labels=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="images"):
        train_supervised(config(tmp_path), data=bad)
    with pytest.raises(ValueError, match="augment"):
        train_supervised(config(tmp_path, augment="mixup"), data=tiny_data())
    no_boxes = SimpleNamespace(images=tiny_data().images, labels=tiny_data().labels)
    with pytest.raises(ValueError, match="boxes"):
        train_supervised(config(tmp_path, attn_loss_weight=1.0), data=no_boxes)


# ---------------------------------------------------------------------------------- attention supervision
class _FakeRecorder:
    """Stand-in for rtsseg.attention.capture.AttentionRecorder: 2 'heads' = softmax over the positions of the
    tiny backbone's first two feature channels, recorded with gradient."""

    def __init__(self, backbone, layer=None):
        self.backbone, self.maps = backbone, None

    def __enter__(self):
        def hook(_m, _i, out):  # out [B,C,h,w]
            b, _, h, w = out.shape
            self.maps = out[:, :2].flatten(2).softmax(-1).view(b, 2, h, w)

        self._h = self.backbone.features.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self._h.remove()


def _fake_box_loss(maps, boxes, image_size, heads):
    """1 - attention mass inside the box (box pixels scaled to the map grid)."""
    b, n, h, w = maps.shape
    yy, xx = torch.meshgrid((torch.arange(h) + 0.5) * image_size / h, (torch.arange(w) + 0.5) * image_size / w,
                            indexing="ij")
    inside = torch.stack([(xx > bx[0]) & (xx < bx[2]) & (yy > bx[1]) & (yy < bx[3]) for bx in boxes]).float()
    sel = maps if heads is None else maps[:, list(heads)]
    return 1 - (sel * inside[:, None]).sum((2, 3)).mean()


def test_attention_loss_enters_the_training_step(tmp_path, monkeypatch):
    monkeypatch.setattr(att, "_attention_parts", lambda: (_FakeRecorder, _fake_box_loss, _fake_box_loss))
    monkeypatch.setattr(method_module, "code_digest", lambda *m: "fixed")
    data = tiny_data()
    plain = train_supervised(config(tmp_path, epochs=1), data=data)
    control = train_supervised(config(tmp_path, epochs=1, attn_loss_weight=5.0, attn_loss_heads=(0,)), data=data)
    assert control != plain
    row = next(csv.DictReader(open(control / "history.csv")))
    assert 0 < float(row["attn_loss"]) < 1
    assert float(row["loss"]) == pytest.approx(float(row["ce_loss"]) + 5.0 * float(row["attn_loss"]), rel=1e-5)
    a, b = load_checkpoint(plain / "checkpoint.pt"), load_checkpoint(control / "checkpoint.pt")
    assert not torch.equal(a["backbone"]["features.0.weight"], b["backbone"]["features.0.weight"])


_HAVE_ATTN = all(importlib.util.find_spec(m) for m in ("rtsseg.attention.supervision",)) and hasattr(
    importlib.import_module("rtsseg.attention.capture"), "AttentionRecorder")


@pytest.mark.skipif(not _HAVE_ATTN, reason="rtsseg.attention.supervision.box_attention_loss and "
                    "rtsseg.attention.capture.AttentionRecorder come from the 'attn' branch (merged by the lead)")
def test_attention_supervised_control_with_the_real_modules(tmp_path):
    data = tiny_data(16, size=64)
    data.boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0]]).repeat(16, 1)
    run = train_supervised(config(tmp_path, backbone="vit_small64", image_size=64, epochs=1, batch_size=8,
                                  attn_loss_weight=1.0, attn_loss_heads=(0, 1)), data=data)
    row = next(csv.DictReader(open(run / "history.csv")))
    assert float(row["attn_loss"]) > 0
