"""Published weights as extra initialisations of chapters 5-7 (the ``published`` parameter), offline: a local file
in the official layout goes through the chapters' own loop (``rtsseg.experiments.iter_models``)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from rtsseg import experiments as X
from rtsseg.report import RunRecord


@pytest.fixture(scope="module")
def dino_dir(tmp_path_factory):
    """The official DINO ViT-S/8 file's layout (timm's ViT keys at 224 px, a plain state dict)."""
    import timm

    torch.manual_seed(0)
    sd = timm.create_model("vit_small_patch8_224", num_classes=0).state_dict()
    folder = tmp_path_factory.mktemp("published")
    torch.save(sd, folder / "dino_deitsmall8_pretrain.pth")
    return folder, sd


def test_entries_name_checkpoint_and_backbone_or_list_the_choices():
    assert X.published_entries(["dino/vit_s8_64", "barlow twins/botnet50"]) == [
        ("dino", "vit_s8_64", "published dino"), ("barlow twins", "botnet50", "published barlow twins")]
    assert X.published_inits(["dino/vit_s16", "dino/vit_s8"]) == ["published dino"]
    for bad in ("dino", "dino/resnet50", "mocov3/vit_s16"):
        with pytest.raises(ValueError, match=r"parameter published: .*Fix: use entries of \[.*'dino/vit_s8_64'"):
            X.published_entries([bad])


def test_cells_add_a_random_init_of_a_new_backbone_once():
    runs = [("vit_small64", 0), ("vit_small64", 1)]
    assert X.published_cells(["dino/vit_s8_64", "dino/vit_s16"], runs, X.INITS) == [
        ("vit_s8_64", "random"), ("vit_s8_64", "published dino"), ("vit_s16", "random"), ("vit_s16", "published dino")]
    # a backbone the trained grid already has keeps its own random init (seed 0 of the grid)
    assert X.published_cells(["dino/vit_s8_64"], [("vit_s8_64", 0)], X.INITS) == [("vit_s8_64", "published dino")]
    assert X.published_cells([], runs, X.INITS) == []


def test_the_chapters_loop_yields_the_published_weights_and_records_their_file(dino_dir, tmp_path, monkeypatch):
    folder, sd = dino_dir
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    record, missing = RunRecord("05_attention_maps", {"profile": "smoke"}), []
    # the trained grid (random only: no training chapter ran) and, after it, the published cells; the published
    # init named in `inits` (for the tables' order) is served by the published loop, not looked up as a run
    got = list(X.iter_models("smoke", [("vit_small64", 0)], ["random", "published dino"], 64, missing,
                             record=record, published=["dino/vit_s8_64"], published_dir=folder, need_attention=True))
    assert [(b, i, s) for b, i, s, _ in got] == [("vit_small64", "random", 0), ("vit_s8_64", "random", 0),
                                                ("vit_s8_64", "published dino", 0)]
    assert missing == []
    published = got[-1][3]
    own = published.model.state_dict()
    assert torch.equal(own["blocks.11.attn.qkv.weight"], sd["blocks.11.attn.qkv.weight"])
    assert own["pos_embed"].shape[1] == 1 + 8 * 8  # resampled to the 64 px grid
    assert not published.training and not got[1][3].model.state_dict()["blocks.11.attn.qkv.weight"].equal(
        sd["blocks.11.attn.qkv.weight"])  # the random init of the same backbone is not the file's
    digest = hashlib.sha256((folder / "dino_deitsmall8_pretrain.pth").read_bytes()).hexdigest()[:12]
    assert record.runs["published"] == {"published dino/vit_s8_64/0": f"dino_deitsmall8_pretrain.pth sha256 {digest}"}
    assert record.runs["analysed"] == {}  # random inits are not runs of a training chapter
    table = record.finish()
    assert table.loc["published weights"].iloc[0] == 1


def test_a_missing_file_is_a_skipped_cell_without_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    missing = []
    got = list(X.iter_models("smoke", [], ["random"], 64, missing, published=["dino/vit_s8_64"],
                             published_dir=tmp_path / "nothing-here"))
    assert [(b, i) for b, i, _, _ in got] == [("vit_s8_64", "random")]
    [(backbone, init, seed, why)] = missing
    assert (backbone, init, seed) == ("vit_s8_64", "published dino", 0)
    assert why == "weights file not found: dino_deitsmall8_pretrain.pth" and str(tmp_path) not in why


def test_a_backbone_without_attention_is_refused_where_attention_is_measured(tmp_path, monkeypatch):
    import torchvision

    sd = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    torch.save(sd, tmp_path / "resnet50.pth")
    monkeypatch.setenv("RTSSEG_RUNS", str(tmp_path / "runs"))
    cells = [("resnet50", "published barlow twins")]
    with pytest.raises(ValueError, match="resnet50 has no attention layers.*chapter 6 takes it.*botnet50"):
        list(X.iter_published("smoke", cells, 64, [], tmp_path, need_attention=True))
    [(backbone, init, _, model)] = X.iter_published("smoke", cells, 64, [], tmp_path)  # chapter 6: embeddings
    assert (backbone, init) == ("resnet50", "published barlow twins")
    assert torch.equal(model.model.state_dict()["conv1.weight"], sd["conv1.weight"])
