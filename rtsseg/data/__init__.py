"""rtsseg.data: data sets as ``uint8 [3,H,W]`` images and ``int64 [H,W]`` masks (255 = ignore).

CamVid (SegNet split), Tiny-ImageNet-200, COCO-Stuff 164k (171 classes) and COCO-Stuff-27,
image+mask folders, joint transforms. Bad input raises :mod:`rtsseg.errors`.
Downloads: ``rtsseg.data.download.download(name, dest)`` or ``python -m rtsseg.data.download NAME DEST``
(not imported here, so that ``python -m`` runs it cleanly).
"""

from rtsseg.data.camvid import CamVid, camvid_root, download_camvid
from rtsseg.data.cocostuff import (
    CLASS_NAMES_27,
    CLASS_NAMES_171,
    FINE_TO_COARSE,
    NUM_CLASSES_27,
    NUM_CLASSES_171,
    COCOStuff,
    cocostuff_root,
    curated_ids,
    download_cocostuff,
)
from rtsseg.errors import (
    CorruptFileError,
    DataError,
    LabelRangeError,
    MaskFormatError,
    MissingDataError,
    UnpairedFileError,
)
from rtsseg.data.folder import ImageMaskFolder, pair_by_stem
from rtsseg.data.io import make_lut, read_image, read_mask
from rtsseg.data.tinyimagenet import (
    TinyImageNet,
    TinyImageNetTensors,
    download_tiny_imagenet,
    load_tensors,
    tiny_imagenet_root,
    tinyimagenet_root,
)
from rtsseg.data.transforms import (
    Compose,
    ImageOnlyResize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    collate,
)

__all__ = [
    "CLASS_NAMES_27", "CLASS_NAMES_171", "FINE_TO_COARSE", "NUM_CLASSES_27", "NUM_CLASSES_171",
    "CamVid", "COCOStuff", "Compose", "CorruptFileError", "DataError", "ImageMaskFolder", "ImageOnlyResize",
    "LabelRangeError", "MaskFormatError", "MissingDataError", "RandomCrop", "RandomHorizontalFlip", "Resize",
    "TinyImageNet", "TinyImageNetTensors", "UnpairedFileError", "camvid_root", "cocostuff_root", "collate",
    "curated_ids", "tiny_imagenet_root", "download_camvid", "download_cocostuff", "download_tiny_imagenet", "load_tensors", "make_lut",
    "pair_by_stem", "read_image", "read_mask", "tinyimagenet_root",
]
