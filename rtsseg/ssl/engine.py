"""The one training engine: ``fit(config, method) -> run folder`` for every pretraining method.

    rtsseg pretrain barlow-twins --backbone resnet_small --epochs 10
    torchrun --standalone --nproc_per_node=2 -m rtsseg.ssl.engine dino --backbone vit_small64 ...   (same CLI)

What a run is, for every method (:class:`rtsseg.ssl.method.Method` says what one step computes):

- Identity: the method's config fields that shape the result, the precision ``amp`` resolves to, the data
  fingerprint and the method's name, with the code digest of the engine plus the method's own modules
  (:meth:`Method.code`): the run folder ``<run_parent>/<12 hex>`` (:func:`rtsseg.rundir.open_run`), locked while
  training. A changed knob or source trains a new run; an unchanged one resumes, or skips when finished.
- Data order: per epoch :func:`rtsseg.sampling.epoch_permutation` ``(seed, epoch)``; global step i takes
  positions ``[i*B, (i+1)*B)``, rank r every W-th of them; the last incomplete batch is dropped. Augmentation
  draws from ``step_generator(seed, step, rank, method.stream)``. Everything random is a function of
  (seed, step, rank), so a resumed run equals an uninterrupted one bit for bit.
- Precision (:mod:`rtsseg.precision`): the step runs under autocast, the loss is scaled by a GradScaler for fp16.
- DDP over gloo (CPU) / nccl (CUDA) wraps the module ``Method.build`` returns; rank 0 writes.
- Compilation: ``compile`` (a config field, part of the identity: a compiled step may round differently) runs
  ``torch.compile(model, mode=compile)`` on the module the loop trains (after the DDP wrap); the modules a method
  checkpoints stay uncompiled, so checkpoint keys never gain ``_orig_mod.``.
- The loop does not wait for the device: each step's loss and tensor scalars stay there (one stacked copy per
  step) and are read back together every ``sync_every_steps`` steps (operational; default 1: every step, as
  before) and before every epoch end and checkpoint. The read-back writes their ``steps.csv`` rows, updates the
  progress bar and checks the losses; the methods return tensors, not ``.item()`` (:meth:`Method.training_step`).
- A non-finite loss stops the run with :class:`NonFiniteLossError` and ``nan_diagnostic.json`` naming the first
  non-finite step; since a read-back precedes every save, no checkpoint covers it and the last good one stays.
  With ``sync_every_steps`` > 1 the steps up to the read-back have run (at most ``sync_every_steps - 1`` more), so
  ``parameters_finite`` and the method's :meth:`~rtsseg.ssl.method.Method.diagnose` describe the model there.
- Outputs: ``checkpoint.pt`` (atomic: the method's state, optimiser, scaler, every rank's RNG, step; at epoch
  ends and every ``save_every_steps``), ``history.csv`` (one row per epoch), ``steps.csv`` (one row per step).
- Fault hook: ``fault_at_step`` (a config field, operational): SIGKILL after that step (the resume tests).
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rtsseg.precision import autocast, autocast_dtype, grad_scaler, precision_name
from rtsseg.rundir import Run, open_run
from rtsseg.sampling import batch_indices, epoch_permutation, step_generator
from rtsseg.ssl import distributed as D
from rtsseg.ssl.method import COMPILE_MODES, Context, Method, method_class

TRAIN_DIAGNOSTIC = "nan_diagnostic.json"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; ``<run folder>/nan_diagnostic.json`` says where and why."""


def run_config(method: Method, device: torch.device | str) -> dict:
    """What a run's identity hashes besides the code: the method, its result-shaping config fields, the precision
    ``amp`` resolves to on ``device`` (a bf16 run and an fp32 run are different results) and the data fingerprint."""
    amp = precision_name(autocast_dtype(method.cfg.amp, device))
    return {"method": method.name, **method.identity(), "precision": amp,
            "data_fingerprint": method.data_fingerprint()}


def check_engine_fields(cfg) -> None:
    """The config fields every method's config has for the engine, checked before anything is written."""
    if cfg.compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {cfg.compile!r}")
    if isinstance(cfg.sync_every_steps, bool) or not isinstance(cfg.sync_every_steps, int) or cfg.sync_every_steps < 1:
        raise ValueError(f"sync_every_steps must be an integer >= 1 (1: read every step back), got "
                         f"{cfg.sync_every_steps!r}")


def _method(config, method) -> Method:
    if isinstance(method, Method):
        return method
    cls = method_class(method) if isinstance(method, str) else method
    return cls.for_config(config)


def fit(config, method: Method | type[Method] | str) -> Path:
    """Train (or resume, or skip when finished) the run of ``config`` with ``method`` (an instance, a Method
    class or a registered name); return its run folder."""
    method = _method(config, method)
    if hasattr(config, "validate"):
        config.validate()  # before anything is written: a bad knob names itself
    check_engine_fields(config)
    info = D.init_from_env(config.device)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.batch_size % info.world_size:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the {info.world_size} ranks")
    run = open_run(method.run_parent(), run_config(method, info.device), method.code(), restart=config.restart,
                   primary=info.is_main)
    D.barrier()  # rank 0 has created (or wiped) the folder
    try:
        _fit(config, method, run, info)
    except BaseException:
        run.close("failed")
        raise
    run.close()
    return run.path


def _epoch_means(run: Run, epoch: int, columns: dict[str, str]) -> dict:
    """Means over ``epoch``'s rows of steps.csv (rank 0's values): a run resumed mid-epoch logs the same means
    as an uninterrupted one (its first steps ran before the resume)."""
    rows = [r for r in run.read_history("steps.csv") if int(r["epoch"]) == epoch]
    return {h: float(np.mean([float(r[s]) for r in rows])) if rows else float("nan") for h, s in columns.items()}


def _fit(cfg, method: Method, run: Run, info: D.DistInfo) -> None:
    from rtsseg.config import seed_everything

    seed_everything(cfg.seed)  # the same initial weights on every rank (DDP broadcasts them anyway)
    n = method.load_data(info)
    steps_per_epoch = n // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{n} training items are fewer than one batch of {cfg.batch_size}: lower batch_size")
    total = cfg.epochs * steps_per_epoch
    ctx = Context(info, autocast_dtype(cfg.amp, info.device), steps_per_epoch, total, run)
    module = method.build(ctx)
    optimizer = method.configure_optimizer()
    scaler = grad_scaler(info.device, ctx.amp_dtype)  # fp16: a scaled loss; otherwise a pass-through

    step, wall_offset = 0, 0.0
    state = run.load()  # identity verified: never another configuration's checkpoint
    if state is not None:
        if int(state["steps_per_epoch"]) != steps_per_epoch:
            raise ValueError(f"{run.checkpoint}: {state['steps_per_epoch']} steps per epoch, this run has "
                             f"{steps_per_epoch}: restart the run (--restart)")
        method.load_state_dict(state)
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        step, wall_offset = run.resume_position(state, info.rank, steps_per_epoch)
        if info.is_main:
            verb = "finished run" if step >= total else "resumed from"
            print(f"{verb} {run.checkpoint} at step {step}/{total}", file=sys.stderr, flush=True)
    elif info.is_main:
        for name in ("steps.csv", "history.csv", TRAIN_DIAGNOSTIC):
            (run.path / name).unlink(missing_ok=True)

    model = module
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    if cfg.compile != "none":  # the module trained, not the ones checkpointed (their keys stay without _orig_mod.)
        model = torch.compile(model, mode=cfg.compile)
    t0 = time.perf_counter() - wall_offset

    def save(step_done: int) -> None:
        states = D.gather_rng_states(info)
        if info.is_main:
            run.save({**method.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
                      "rng": states, "step": step_done, "epoch": step_done // steps_per_epoch,
                      "steps_per_epoch": steps_per_epoch, "total_steps": total, "wall_s": time.perf_counter() - t0,
                      "backbone_name": cfg.backbone, "embed_dim": method.embed_dim(), "method": method.name})
        D.barrier()

    def epoch_end(epoch: int, step_done: int) -> None:
        values = method.validate(epoch, step_done, ctx)  # every rank: monitors may all-reduce
        if info.is_main:
            means = _epoch_means(run, epoch, method.epoch_means) if epoch else dict.fromkeys(method.epoch_means,
                                                                                             float("nan"))
            row = {"epoch": epoch, "step": step_done, **means, **values, "wall_s": time.perf_counter() - t0}
            run.append_history("history.csv", row, method.history_fields)
            shown = " ".join(f"{k} {v:.4g}" for k, v in row.items() if k not in ("epoch", "step", "wall_s")
                             and isinstance(v, float))
            print(f"{method.name} epoch {epoch}/{cfg.epochs} step {step_done} {shown}", file=sys.stderr, flush=True)
        D.barrier()

    if step == 0 and method.validate_at_start:
        epoch_end(0, 0)
    step_fields = ["step", "epoch", "loss", *method.step_fields]
    bar = tqdm(total=total, initial=step, desc=method.name, disable=not (cfg.progress and info.is_main))
    pending: list[_Pending] = []  # steps run and not yet read back

    def log(rows: list[_Row]) -> None:
        if info.is_main and rows:
            for r in rows:
                run.append_history("steps.csv", {"step": r.step + 1, "epoch": r.epoch + 1, "loss": r.loss,
                                                 **r.scalars}, step_fields)
            bar.update(len(rows))
            bar.set_postfix(loss=f"{rows[-1].loss:.3f}")

    def flush() -> None:
        """Read the pending steps back in one transfer (the engine's one host synchronisation), append their rows
        to steps.csv and stop at the first non-finite loss (neither its row nor a later one is written)."""
        if not pending:
            return
        rows = _read_back(pending)
        pending.clear()
        for i, r in enumerate(rows):
            if not math.isfinite(r.loss):
                log(rows[:i])
                _stop_nonfinite(method, run, info, module, r.step, r.epoch, r.loss, r.scalars)
        log(rows)

    perm_epoch, perm = -1, None
    module.train()
    while step < total:
        epoch, i = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm_epoch, perm = epoch, epoch_permutation(n, cfg.seed, epoch)
        idx = batch_indices(perm, i, cfg.batch_size, info.rank, info.world_size)  # int64 [B / W]
        batch = method.make_batch(idx, step_generator(cfg.seed, step, info.rank, stream=method.stream), step, ctx)
        with autocast(info.device, ctx.amp_dtype):
            loss, scalars = method.training_step(model, batch, step, ctx)
        pending.append(_record(step, epoch, loss, scalars))
        if (step + 1) % cfg.sync_every_steps == 0:  # before backward: with 1, a non-finite loss never steps
            flush()
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        method.before_optimizer_step(model, scaler, step, ctx)
        scaler.step(optimizer)
        scaler.update()
        method.after_optimizer_step(step, ctx)
        step += 1
        if cfg.fault_at_step is not None and step == cfg.fault_at_step:
            os.kill(os.getpid(), signal.SIGKILL)  # crash simulation (the resume tests): pending steps are lost
        if step % steps_per_epoch == 0:  # the run's last step is an epoch end: every step is read back
            flush()
            epoch_end(epoch + 1, step)
            save(step)
        elif cfg.save_every_steps and step % cfg.save_every_steps == 0:
            flush()
            save(step)
    bar.close()
    if not run.checkpoint.exists():
        save(step)
    D.barrier()
    run.finish()


class _Pending(NamedTuple):
    """A step run and not yet read back: ``values`` = [loss, *scalars[k] for k in on_device] on the device."""

    step: int  # 0-based, as the loop counts
    epoch: int
    values: torch.Tensor
    scalars: dict  # the Python scalars; None for those in on_device
    on_device: tuple[str, ...]


class _Row(NamedTuple):
    """A step read back: its loss and scalars as Python numbers."""

    step: int  # 0-based
    epoch: int
    loss: float
    scalars: dict


def _record(step: int, epoch: int, loss: torch.Tensor, scalars: dict) -> _Pending:
    """Step ``step``'s loss and tensor scalars stacked into one new tensor [1 + tensors] on the device, not read
    back. A copy: later steps may reuse the memory of their outputs (CUDA graphs do)."""
    on_device = tuple(k for k, v in scalars.items() if isinstance(v, torch.Tensor))
    values = torch.stack([loss.detach(), *(scalars[k].detach() for k in on_device)])
    return _Pending(step, epoch, values, {k: None if k in on_device else v for k, v in scalars.items()}, on_device)


def _read_back(pending: list[_Pending]) -> list[_Row]:
    """The pending steps with Python floats for their tensors, from one transfer of all of them
    (``torch.cat(...).tolist()``: the values ``.item()`` gives, bit for bit)."""
    values, start, rows = torch.cat([p.values for p in pending]).tolist(), 0, []  # [sum of 1 + tensors]
    for p in pending:
        loss, *read = values[start:start + 1 + len(p.on_device)]
        start += 1 + len(p.on_device)
        read = dict(zip(p.on_device, read))
        rows.append(_Row(p.step, p.epoch, loss, {k: read.get(k, v) for k, v in p.scalars.items()}))
    return rows


def _stop_nonfinite(method: Method, run: Run, info: D.DistInfo, module: nn.Module, step: int, epoch: int,
                    loss: float, scalars: dict) -> None:
    diag = {"step": step, "epoch": epoch, "loss": loss, **scalars,
            "parameters_finite": all(bool(torch.isfinite(p).all()) for p in module.parameters()),
            **method.diagnose(),
            "last_checkpoint": str(run.checkpoint) if run.checkpoint.exists() else None,
            "hint": "lower the learning rate (or clip_grad), check the data, or use amp=none"}
    if info.is_main:
        (run.path / TRAIN_DIAGNOSTIC).write_text(json.dumps(diag, indent=2, default=float))
    raise NonFiniteLossError(f"non-finite loss at step {step} (epoch {epoch}): {json.dumps(diag, default=float)}")


# ------------------------------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None, prog: str = "python -m rtsseg.ssl.engine") -> int:
    """``rtsseg pretrain METHOD --flag ...`` and ``python -m rtsseg.ssl.engine METHOD ...`` (torchrun too): one
    flag per field of the method's config (:mod:`rtsseg.configargs`); prints the run folder (rank 0). A config
    error, or a run folder locked by another process or holding another configuration, is one line on stderr
    and exit status 1; an unknown method or backbone exit status 2."""
    from rtsseg.configargs import config_from_args
    from rtsseg.errors import DataError
    from rtsseg.ssl.method import list_methods

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(f"usage: {prog} {{{','.join(m for m in list_methods() if m != 'attention-supervised')}}} --flag ...\n"
              "  (--help after the method lists its flags; supervised with --attn-loss-weight > 0 is the "
              "attention-supervised control)", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    try:
        cls = method_class(argv[0])
    except KeyError as err:
        print(f"{prog}: error: {err.args[0]}", file=sys.stderr)
        return 2
    cfg = config_from_args(cls.config_class, argv[1:], cls.__doc__.split("\n")[0], f"{prog} {argv[0]}")
    try:  # the one place a module:callable backbone may be named: this command line, never a file
        from rtsseg.models import register_command_line_backbone

        register_command_line_backbone(cfg.backbone)
    except KeyError as err:
        print(f"{prog}: error: {err.args[0]}", file=sys.stderr)
        return 2
    try:
        run_dir = fit(cfg, cls)
    except (DataError, ValueError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 1
    finally:
        D.cleanup()
    if D.get_rank() == 0 and int(os.environ.get("RANK", "0")) == 0:
        print(f"run folder: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":  # `python -m rtsseg.ssl.engine`: run the imported module, the one the methods import
    from rtsseg.ssl.engine import main as _main

    sys.exit(_main())
