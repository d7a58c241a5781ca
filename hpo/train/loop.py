"""The training loop every study uses: data already on the device, batches by index.

Airbench-style: the dataset is one tensor on the device, each epoch draws a permutation there,
and batches are slices of it. Nothing in the inner loop synchronizes with the host; the loss is
summed on the device and read once per epoch (that read is also where a NaN is caught).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hpo.definition import Splits

log = logging.getLogger(__name__)

LOSSES = ("cross_entropy", "mse")
SCHEDULES = ("constant", "cosine")
EVAL_BATCH_SIZE = 2048

Transform = Callable[[torch.Tensor], torch.Tensor]
EpochCallback = Callable[[int, float, float], None]  # (epoch, val_accuracy, seconds)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial fails with this as its reason."""


@dataclass(frozen=True)
class FitResult:
    val_accuracy: float
    epochs_run: int
    seconds_per_epoch: float


def compute_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor, *,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    if kind == "cross_entropy":
        return F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
    if kind == "mse":
        # The seed's Question 1: squared error on the class probabilities.
        probabilities = logits.float().softmax(dim=1)
        return F.mse_loss(probabilities, F.one_hot(labels, logits.shape[1]).float())
    raise ValueError(f"Unknown loss {kind!r}; expected one of {LOSSES}.")


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(params: Sequence[torch.Tensor], *, lr: float, weight_decay: float
                   ) -> torch.optim.AdamW:
    """AdamW: Adam with decoupled weight decay (with weight_decay=0 it is exactly Adam)."""
    # The fused kernel updates all parameters in one pass; it exists for CUDA and CPU.
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def cosine_factor(step: int, total_steps: int) -> float:
    """The learning rate's multiplier at ``step`` of ``total_steps``: 1 at the start, then a
    half cosine down to 0 at the end of the trial's full budget of epochs."""
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *,
             transform: Transform | None = None, mixed_precision: bool = True,
             channels_last: bool = False, batch_size: int = EVAL_BATCH_SIZE) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        if transform is not None:
            batch = transform(batch)
        if channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with _autocast(x.device, mixed_precision):
            logits = model(batch)
        correct += (logits.argmax(dim=1) == y[start:start + batch_size]).sum()
    return correct.item() / max(len(x), 1)


def fit(model: nn.Module, splits: Splits, *, epochs: int, lr: float, batch_size: int,
        weight_decay: float = 0.0, loss: str = "cross_entropy", label_smoothing: float = 0.0,
        schedule: str = "constant", seed: int = 0,
        transform: Transform | None = None, on_epoch: EpochCallback | None = None,
        mixed_precision: bool = True, channels_last: bool = False,
        resume: Mapping[str, Any] | None = None, on_resume: Callable[[int], None] | None = None,
        save_state: Callable[[int, dict[str, Any]], None] | None = None) -> FitResult:
    """Train ``model`` with AdamW and return the last epoch's validation accuracy.

    ``schedule="cosine"`` decays the learning rate over all ``epochs``, step by step; a trial
    pruned early stops part-way down that curve, as Hyperband-style pruning expects (every
    trial is on the same schedule, so their curves compare epoch by epoch).
    ``on_epoch`` runs after every epoch with the validation accuracy; it may raise to stop
    training (that is how a trial is pruned). ``transform`` runs per batch on the device.
    bf16 autocast and channels_last apply on CUDA only.

    ``save_state(epoch, state)`` runs after every epoch, before ``on_epoch``, with everything
    needed to go on from there (:func:`training_state`). ``resume`` is such a state: if it was
    saved by a ``fit`` with the same settings on the same network, training goes on after its
    epoch, exactly as if it had never stopped, and ``on_resume(epoch)`` runs first; if not, a
    warning says why and training starts from scratch.
    """
    device = splits.train_x.device
    if loss not in LOSSES:
        raise ValueError(f"Unknown loss {loss!r}; expected one of {LOSSES}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}; expected one of {SCHEDULES}.")
    channels_last = channels_last and device.type == "cuda"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(trainable, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator(device=device).manual_seed(seed)
    n = len(splits.train_x)
    n_batches = math.ceil(n / batch_size)
    total_steps, step = epochs * n_batches, 0
    # Without gradients a few times the training batch fits; a fixed 2048 would not for
    # VGG-16 at 224 px on a small GPU.
    eval_batch_size = min(EVAL_BATCH_SIZE, 4 * batch_size)
    # What a saved state must share with this fit to be resumed by it.
    settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "weight_decay": weight_decay,
                "loss": loss, "label_smoothing": label_smoothing, "schedule": schedule,
                "train_size": n, "seed": seed}

    val_accuracy, seconds, first_epoch = 0.0, 0.0, 1
    if resume is not None and _restore(resume, settings, model, optimizer, generator):
        first_epoch, step = int(resume["epoch"]) + 1, int(resume["step"])
        val_accuracy = float(resume["val_accuracy"])
        if on_resume is not None:
            on_resume(first_epoch - 1)
    group = optimizer.param_groups[0]  # after _restore: load_state_dict replaces the groups
    for epoch in range(first_epoch, epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, device=device, generator=generator)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n, batch_size):
            index = order[start:start + batch_size]
            x = splits.train_x[index]
            if transform is not None:
                x = transform(x)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, mixed_precision):
                batch_loss = compute_loss(loss, model(x), splits.train_y[index],
                                          label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            batch_loss.backward()
            if schedule == "cosine":  # a Python float: no device work, no sync
                group["lr"] = lr * cosine_factor(step, total_steps)
            optimizer.step()
            step += 1
            loss_sum += batch_loss.detach()
        mean_loss = loss_sum.item() / n_batches  # one host-device sync per epoch
        if not math.isfinite(mean_loss):
            raise TrainingDiverged(f"the training loss became {mean_loss} in epoch {epoch}")
        val_accuracy = accuracy(model, splits.val_x, splits.val_y, transform=transform,
                                mixed_precision=mixed_precision, channels_last=channels_last,
                                batch_size=eval_batch_size)
        seconds = time.perf_counter() - started
        if save_state is not None:
            save_state(epoch, training_state(model, optimizer, generator, epoch=epoch, step=step,
                                             val_accuracy=val_accuracy, settings=settings))
        if on_epoch is not None:
            on_epoch(epoch, val_accuracy, seconds)
    return FitResult(val_accuracy, epochs, seconds)


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer,
                   generator: torch.Generator, *, epoch: int, step: int, val_accuracy: float,
                   settings: Mapping[str, Any]) -> dict[str, Any]:
    """Everything :func:`fit` needs to go on after ``epoch`` as if it had not stopped: tensors,
    numbers and strings only, so it loads with ``torch.load(weights_only=True)``."""
    rng = {"cpu": torch.get_rng_state(), "data_order": generator.get_state()}
    if generator.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(generator.device)
    return {"epoch": epoch, "step": step, "val_accuracy": val_accuracy,
            "settings": dict(settings), "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "rng": rng}


def _restore(state: Mapping[str, Any], settings: Mapping[str, Any], model: nn.Module,
             optimizer: torch.optim.Optimizer, generator: torch.Generator) -> bool:
    """Load a saved training state into this fit's network, optimizer and generators.

    Returns False, with a warning saying why, if it does not fit; everything is then left as
    it was, so training starts from scratch."""
    problem = _state_mismatch(state, settings, model, optimizer, generator)
    if problem is None:
        before = {key: value.detach().clone() for key, value in model.state_dict().items()}
        fresh_optimizer = optimizer.state_dict()
        fresh_rng = torch.get_rng_state(), generator.get_state()
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"]["cpu"])
            generator.set_state(state["rng"]["data_order"])
            if "cuda" in state["rng"]:
                torch.cuda.set_rng_state(state["rng"]["cuda"], generator.device)
            return True
        except Exception as error:  # put everything back and start afresh
            model.load_state_dict(before)
            optimizer.load_state_dict(fresh_optimizer)
            torch.set_rng_state(fresh_rng[0])
            generator.set_state(fresh_rng[1])
            problem = f"it could not be loaded ({str(error).strip()[:200]})"
    log.warning("Ignoring the saved training state (the resume point): %s; training starts "
                "from scratch.", problem)
    return False


def _state_mismatch(state: Mapping[str, Any], settings: Mapping[str, Any], model: nn.Module,
                    optimizer: torch.optim.Optimizer, generator: torch.Generator) -> str | None:
    """Why ``state`` cannot be resumed by this fit, or None if it can."""
    try:
        if dict(state["settings"]) != dict(settings):
            return "it was saved with other training settings"
        epoch, per_epoch = int(state["epoch"]), math.ceil(settings["train_size"]
                                                           / settings["batch_size"])
        if not 1 <= epoch <= int(settings["epochs"]) or int(state["step"]) != epoch * per_epoch:
            return "its epoch or step is out of range"
        float(state["val_accuracy"])
        saved, own = state["model"], model.state_dict()
        if set(saved) != set(own) or any(
                not isinstance(saved[k], torch.Tensor) or saved[k].shape != own[k].shape
                for k in own):
            return "it holds another network's weights"
        saved_optimizer = state["optimizer"]
        groups = saved_optimizer["param_groups"]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if len(groups) != len(optimizer.param_groups) \
                or sum(len(g["params"]) for g in groups) != len(params):
            return "its optimizer state is for other parameters"
        ids = [i for g in groups for i in g["params"]]
        for index, param in zip(ids, params, strict=True):
            for value in saved_optimizer["state"].get(index, {}).values():
                if isinstance(value, torch.Tensor) and value.dim() > 0 \
                        and value.shape != param.shape:
                    return "its optimizer state is for other parameters"
        rng = state["rng"]
        needed = ["cpu", "data_order"] + (["cuda"] if generator.device.type == "cuda" else [])
        if any(not isinstance(rng.get(k), torch.Tensor) for k in needed):
            return "its random number generator states are missing"
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return f"it is incomplete ({type(error).__name__}: {error})"
    return None
