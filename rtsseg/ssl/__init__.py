"""rtsseg.ssl: Barlow Twins done as in facebookresearch/barlowtwins, on CPU or GPU, one or many processes.

    loss.py         BarlowTwinsLoss (global-batch BN, autograd-aware all-reduce, fp32)
    projector.py    Projector, GlobalBatchNorm1d
    lars.py         LARS, lars_param_groups, set_lr
    augment.py      BarlowTwinsAugment (batched tensors, any device)
    distributed.py  torchrun helpers, differentiable global statistics
    monitors.py     embedding std, k-NN monitor, cross-correlation snapshots
    method.py       the Method contract and registry (@register_method)
    engine.py       fit(config, method): the one training loop (CLI: rtsseg pretrain METHOD; torchrun -m rtsseg.ssl.engine)
    train.py        Barlow Twins method: PretrainConfig, pretrain
    dino_train.py   DINO method: DinoConfig, pretrain_dino (dino.py, dino_augment.py, dino_schedule.py its pieces)
    supervised.py   supervised baseline: SupervisedConfig, train_supervised; attention_supervised.py the control
    plot.py         figures for the notebook
"""

from rtsseg.ssl.augment import BarlowTwinsAugment
from rtsseg.checkpoint import load_checkpoint, save_checkpoint
from rtsseg.ssl.lars import LARS, lars_param_groups, set_lr
from rtsseg.ssl.loss import BarlowTwinsLoss
from rtsseg.ssl.model import BarlowTwins
from rtsseg.ssl.monitors import KNNMonitor, embedding_std
from rtsseg.ssl.projector import GlobalBatchNorm1d, Projector

_TRAIN_NAMES = ("NonFiniteLossError", "PretrainConfig", "pretrain")


def __getattr__(name: str):
    # the trainer (and with it the engine) is imported on first use only: `python -m rtsseg.ssl.engine` must not
    # find the engine already imported by the package (runpy warns and would hold two copies of the module).
    if name in _TRAIN_NAMES:
        from rtsseg.ssl import train

        return getattr(train, name)
    raise AttributeError(f"module 'rtsseg.ssl' has no attribute {name!r}")

__all__ = [
    "BarlowTwins", "BarlowTwinsAugment", "BarlowTwinsLoss", "GlobalBatchNorm1d", "KNNMonitor", "LARS",
    "NonFiniteLossError", "PretrainConfig", "Projector", "embedding_std", "lars_param_groups", "load_checkpoint",
    "pretrain", "save_checkpoint", "set_lr",
]
