"""The contract between the one training engine (:func:`rtsseg.ssl.engine.fit`) and a training method.

A method (Barlow Twins, DINO, supervised, the attention-supervised control, a test's toy) says *what* one step
computes; the engine owns *how* a run goes: run folder and identity, lock, resume, checkpoint, history, data
order, DDP, mixed precision, the non-finite-loss check, progress and the fault hook. The pattern is solo-learn's
``BaseMethod`` (the loop lives once, a method overrides its step), without Lightning.

Methods are registered where they are defined (``@register_method("dino")``, as timm registers models);
:func:`method_class` imports the modules of the built-in methods on first use, from the fixed
:data:`BUILTIN_METHODS` table in this file (nothing read from a file selects code).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rtsseg.rundir import Run, code_digest
from rtsseg.ssl.distributed import DistInfo

#: The engine's own source: part of every method's code digest (a change to the loop retrains every method).
ENGINE_CODE = ("rtsseg.ssl.engine", "rtsseg.ssl.method", "rtsseg.ssl.distributed", "rtsseg.sampling",
               "rtsseg.schedule", "rtsseg.precision", "rtsseg.models")
#: Config fields every method's config has that say where or how fast a run goes, not what it computes.
OPERATIONAL_FIELDS = ("run_parent", "device", "num_threads", "save_every_steps", "restart", "progress",
                      "fault_at_step", "sync_every_steps")
#: ``compile`` choices: "none" (eager) or a ``torch.compile`` mode ("reduce-overhead" adds CUDA graphs on CUDA).
#: Part of the run identity (a compiled step may round differently), unlike the operational fields.
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune")
#: name -> module defining it (imported by :func:`method_class` on first use)
BUILTIN_METHODS = {"barlow-twins": "rtsseg.ssl.train", "dino": "rtsseg.ssl.dino_train",
                   "supervised": "rtsseg.ssl.supervised", "attention-supervised": "rtsseg.ssl.attention_supervised"}
_REGISTRY: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator: ``@register_method("dino") class Dino(Method): ...`` (a name is registered once)."""

    def wrap(cls: type[Method]) -> type[Method]:
        if _REGISTRY.get(name, cls) is not cls:
            raise ValueError(f"method {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def method_class(name: str) -> type[Method]:
    """The registered method ``name`` (the built-in ones are imported on first use)."""
    if name not in _REGISTRY and name in BUILTIN_METHODS:
        importlib.import_module(BUILTIN_METHODS[name])
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; methods: {sorted(set(_REGISTRY) | set(BUILTIN_METHODS))}")
    return _REGISTRY[name]


def list_methods() -> list[str]:
    return sorted(set(_REGISTRY) | set(BUILTIN_METHODS))


@dataclass
class Context:
    """What the engine tells a method about the run: where it runs, in which precision, how long."""

    info: DistInfo
    amp_dtype: torch.dtype | None
    steps_per_epoch: int
    total_steps: int
    run: Run

    @property
    def device(self) -> torch.device:
        return self.info.device


class Method(abc.ABC):
    """One training method. Subclasses set the class attributes and implement the abstract methods.

    Order of calls by the engine: ``load_data`` (all ranks) -> ``build`` -> ``configure_optimizer`` ->
    ``load_state_dict`` (on resume) -> [``validate(0)``] -> per step ``make_batch``, ``training_step`` (under autocast) ->
    backward (scaled) -> ``before_optimizer_step`` -> optimiser step -> ``after_optimizer_step``; per epoch
    ``validate`` (all ranks: collectives allowed) and a checkpoint of ``state_dict`` + optimiser + scaler + RNG."""

    name: ClassVar[str] = "?"  # set by register_method
    #: the config dataclass (its fields are the command line's flags, rtsseg.configargs)
    config_class: ClassVar[type]
    #: modules whose source shapes this method's result (with ENGINE_CODE: the run's code digest)
    code_modules: ClassVar[tuple[str, ...]] = ()
    #: per-step scalars (steps.csv after step, epoch, loss), returned by training_step
    step_fields: ClassVar[list[str]] = []
    #: epoch means of steps.csv columns written to history.csv: history column -> steps column
    epoch_means: ClassVar[dict[str, str]] = {"train_loss": "loss"}
    #: history.csv columns (epoch, step ... wall_s), filled by the engine (epoch, step, means, wall_s) and validate
    history_fields: ClassVar[list[str]] = []
    #: a history row for epoch 0 (before training)
    validate_at_start: ClassVar[bool] = True
    #: rtsseg.sampling stream of the training augmentations (BT 0, its monitor 1, DINO 2 / 3, supervised 4)
    stream: ClassVar[int] = 0
    #: the default run parent under runs_root(): runs_root()/<default_parent>/<backbone>
    default_parent: ClassVar[str] = "runs"
    #: config fields naming where the data is (not what it is: the data fingerprint says that)
    location_fields: ClassVar[tuple[str, ...]] = ("data_root", "cache_dir")

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg

    @classmethod
    def for_config(cls, cfg: Any) -> Method:
        """The method instance that trains ``cfg`` (a config may select a variant: the attention control)."""
        return cls(cfg)

    # ---- identity
    def identity(self) -> dict:
        """The config fields that shape the result (hashed into the run folder's name)."""
        skip = set(OPERATIONAL_FIELDS) | set(self.location_fields)
        return {k: v for k, v in asdict(self.cfg).items() if k not in skip}

    def code(self) -> str:
        """sha256 of the sources that shape this method's result (``rundir.code_digest``)."""
        return code_digest(*ENGINE_CODE, *self.code_modules)

    def run_parent(self) -> Path:
        if getattr(self.cfg, "run_parent", None):
            return Path(self.cfg.run_parent)
        from rtsseg.config import runs_root

        return runs_root() / self.default_parent / self.cfg.backbone

    @abc.abstractmethod
    def data_fingerprint(self) -> dict:
        """What identifies the data this run reads (``rtsseg.data.fingerprint``), part of its identity."""

    # ---- set-up
    @abc.abstractmethod
    def load_data(self, info: DistInfo) -> int:
        """Load the training data; return the number of training items (the engine draws their order)."""

    @abc.abstractmethod
    def build(self, ctx: Context) -> nn.Module:
        """Build the modules on ``ctx.device``; return the trainable module (DDP wraps it) that
        ``training_step`` receives. Schedules (per step, from ``ctx.total_steps``) are built here too."""

    @abc.abstractmethod
    def configure_optimizer(self) -> torch.optim.Optimizer:
        """The optimiser over the parameter groups (learning rates are set per step by training_step)."""

    # ---- training
    def make_batch(self, idx: torch.Tensor, generator: torch.Generator, step: int, ctx: Context) -> Any:
        """This rank's batch of step ``step`` from its items ``idx`` (int64 [n]), augmented with draws from
        ``generator``, on ``ctx.device``. Outside autocast: augmentations stay fp32. Default: ``idx`` itself."""
        return idx

    @abc.abstractmethod
    def training_step(self, model: nn.Module, batch: Any, step: int, ctx: Context) -> tuple[torch.Tensor, dict]:
        """One step on ``batch`` (:meth:`make_batch`): set the step's hyper-parameters, forward; return (loss, the
        ``step_fields`` scalars). Runs under autocast. A scalar is a Python number or a detached 0-dim tensor on
        the device: the engine reads tensors back every ``sync_every_steps`` steps, so a step never waits for the
        device (no ``.item()`` / ``float(tensor)`` here, nor in the hooks around the optimiser step)."""

    def before_optimizer_step(self, model: nn.Module, scaler: torch.amp.GradScaler, step: int, ctx: Context) -> None:
        """After backward, before the optimiser step (gradient clipping, frozen layers)."""

    def after_optimizer_step(self, step: int, ctx: Context) -> None:
        """After the optimiser step (an EMA teacher)."""

    def diagnose(self) -> dict:
        """Extra facts for ``nan_diagnostic.json`` when the loss of the last step was not finite."""
        return {}

    @abc.abstractmethod
    def validate(self, epoch: int, step: int, ctx: Context) -> dict:
        """The history columns of ``epoch`` (0 = before training) after ``step`` steps, on every rank (rank 0's
        row is written); k-NN / top-1, fixed monitor batches, schedule values."""

    # ---- state
    @abc.abstractmethod
    def state_dict(self) -> dict:
        """Checkpoint entries of the method (modules, extra state such as DINO's centre); always a
        ``"backbone"`` entry that ``build_backbone(name, weights=checkpoint)`` loads."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved."""

    def embed_dim(self) -> int:
        return int(getattr(self, "backbone").embed_dim)


def adamw(param_groups: list[dict], **kwargs) -> torch.optim.AdamW:
    """The AdamW of every method: ``fused=True`` (one kernel for all parameters) when the parameters are on CUDA;
    elsewhere torch's default implementation, so CPU runs stay what they were."""
    on_cuda = all(p.is_cuda for g in param_groups for p in g["params"])
    return torch.optim.AdamW(param_groups, **kwargs, **({"fused": True} if on_cuda else {}))


def schedule_value(schedule: np.ndarray, step: int) -> float:
    """``schedule[step]`` clamped to its range (the value logged at an epoch end)."""
    return float(schedule[min(max(step, 0), len(schedule) - 1)])


__all__ = ["Method", "Context", "register_method", "method_class", "list_methods", "ENGINE_CODE",
           "OPERATIONAL_FIELDS", "COMPILE_MODES", "adamw", "schedule_value"]
