"""COCO-Stuff-27 from val2017 alone: fit / held-out / test by image id, deterministic and disjoint."""

from __future__ import annotations

import random

import pytest
from torch.utils.data import Subset

from data_fakes import mask_with, write_mask, write_rgb
from rtsseg.config import REPO_ROOT
from rtsseg.data.cocostuff import COCOStuff, cocostuff_val_splits, read_curated_ids, val_split_indices
from rtsseg.errors import MissingDataError

SHARED_CURATED = REPO_ROOT.parent / "shared" / "data" / "cocostuff" / "curated"


def _fake(root, ids, listed):
    """A COCO-Stuff folder with ``ids`` on disk and ``listed`` in the curated val2017 list (in that order)."""
    for k, image_id in enumerate(ids):
        write_rgb(root / "images" / "val2017" / f"{image_id}.jpg", 6, 8, seed=k)
        write_mask(root / "annotations" / "val2017" / f"{image_id}.png", mask_with([0, 91, 255, k % 20]))
    (root / "curated" / "val2017").mkdir(parents=True)
    (root / "curated" / "val2017" / "Coco164kFull_Stuff_Coarse_7.txt").write_text("\n".join(listed) + "\n")
    return root


def test_splits_are_disjoint_cover_the_list_and_do_not_depend_on_its_order(tmp_path):
    ids = [f"{k:012d}" for k in range(100, 124)]
    root = _fake(tmp_path / "a" / "cocostuff", ids + ["000000999999"], ids)  # one image not in the curated list
    splits = cocostuff_val_splits(root / "curated", n_held_out=4, n_test=8)
    assert [len(splits[k]) for k in ("fit", "held_out", "test")] == [12, 4, 8]
    seen = [i for block in splits.values() for i in block]
    assert len(seen) == len(set(seen)) and sorted(seen) == ids  # disjoint, every curated id, nothing else
    assert all(block == sorted(block) for block in splits.values())  # in the curated list's order
    assert cocostuff_val_splits(root / "curated", n_held_out=4, n_test=8) == splits  # deterministic
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    other = _fake(tmp_path / "b" / "cocostuff", ids, shuffled)
    again = cocostuff_val_splits(other / "curated", n_held_out=4, n_test=8)
    assert {k: sorted(v) for k, v in again.items()} == splits  # by id, not by position in the list
    assert cocostuff_val_splits(root / "curated", n_held_out=4, n_test=8, seed=1) != splits
    # not a block of the (sorted) list: the test block is spread over it
    positions = [ids.index(i) for i in splits["test"]]
    assert max(positions) - min(positions) > len(splits["test"])
    assert len(cocostuff_val_splits(root / "curated", n_held_out=4, n_test=8, n_fit=5)["fit"]) == 5
    with pytest.raises(ValueError, match="Fix: ask for smaller blocks"):
        cocostuff_val_splits(root / "curated", n_held_out=10, n_test=14)

    data = COCOStuff(root, "val2017", coarse=True)
    index = val_split_indices(data, splits)
    test = Subset(data, index["test"])
    assert [data.ids[i] for i in index["test"]] == splits["test"]
    image, mask = test[0]
    assert tuple(image.shape) == (3, 6, 8) and set(mask.unique().tolist()) <= set(range(27)) | {255}
    (root / "curated" / "val2017" / "Coco164kFull_Stuff_Coarse_7.txt").write_text("\n".join(ids[:20]) + "\n")
    with pytest.raises(MissingDataError, match="not in this dataset"):
        val_split_indices(COCOStuff(root, "val2017", coarse=True), splits)


@pytest.mark.skipif(not SHARED_CURATED.is_dir(), reason="needs ../shared/data")
def test_the_curated_val_list_splits_with_the_default_sizes():
    ids = read_curated_ids(SHARED_CURATED, "val2017")
    splits = cocostuff_val_splits(SHARED_CURATED)
    assert len(splits["test"]) == 1000 and len(splits["held_out"]) == 200
    assert len(splits["fit"]) == len(ids) - 1200 and sorted(sum(splits.values(), [])) == sorted(ids)


def test_chapter7_splits_cocostuff_val2017_alone_by_image_id(tmp_path):
    """``split_datasets("cocostuff27-val2017")``: fit / held-out / reported val are the id blocks of the curated val
    list, disjoint, with val2017 as the only download."""
    from rtsseg.seg.experiment import split_datasets

    ids = [f"{k:012d}" for k in range(200, 1500, 50)]  # 26 images
    root = _fake(tmp_path / "data" / "cocostuff", ids, ids)
    import rtsseg.data.cocostuff as C

    splits = cocostuff_val_splits(root / "curated", n_held_out=4, n_test=8)
    sets, names, pre, dropped = split_datasets("cocostuff27-val2017", tmp_path / "data", (8, 8), val2017_blocks=(4, 8))
    assert len(names) == 27 and dropped == 0
    data = sets["val"].dataset
    chosen = {k: [data.ids[i] for i in sets[k].indices] for k in ("fit", "holdout", "val")}
    assert chosen == {"fit": splits["fit"], "holdout": splits["held_out"], "val": splits["test"]}
    assert not (set(chosen["fit"]) & set(chosen["val"])) and not (set(chosen["holdout"]) & set(chosen["val"]))
    assert pre["val"]["indices"] == sets["val"].indices and len(chosen["val"]) == 8 and C.VAL_TEST == 1000
