"""The short pretraining loop the zoo's builders share: AdamW with decay / no-decay groups, linear warmup
then cosine, optional bf16 autocast, gradient clipping.

bf16 autocast pays only on a CPU that computes bf16 natively (AVX512-BF16 / AMX: 2× faster than fp32 there);
on one without (AVX2 only), PyTorch emulates it and a build step is ~15× *slower* than fp32 (measured:
``zoo:tiny-vit``, 7 s vs 0.5 s a step). The builders' specs therefore say ``"bf16_autocast": "auto"``, which
:func:`mmadapt.zoo.zoo_spec` turns into ``True`` or ``False`` for this machine before the spec is hashed, so the
cache entry, its manifest and its weights say which one built them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm

from mmadapt.schedule import cosine_with_warmup


def autocast(train_spec: dict):
    """The forward-pass context of a build: bf16 autocast on CPU when ``train_spec["bf16_autocast"]``."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bool(train_spec["bf16_autocast"]))


def pretrain(named_params: Iterable[tuple[str, torch.nn.Parameter]], no_decay: Callable[[str, torch.Tensor], bool],
             step_loss: Callable[[int], torch.Tensor], train_spec: dict, *, betas: tuple[float, float],
             desc: str, progress: bool) -> tuple[float | None, float]:
    """Run ``train_spec["steps"]`` steps of ``step_loss(step).backward()`` + AdamW on ``named_params``.

    ``no_decay(name, param)`` picks the parameters without weight decay. Returns the final EMA of the
    loss and the seconds spent.
    """
    tr = train_spec
    params = list(named_params)
    opt = torch.optim.AdamW([{"params": [p for n, p in params if not no_decay(n, p)], "weight_decay": tr["weight_decay"]},
                             {"params": [p for n, p in params if no_decay(n, p)], "weight_decay": 0.0}],
                            lr=tr["lr"], betas=betas)
    steps = int(tr["steps"])
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, cosine_with_warmup(int(tr["warmup_steps"]), steps, float(tr["min_lr_ratio"])))
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    ema = None
    start = time.perf_counter()
    for step in bar:
        loss = step_loss(step)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for _, p in params], tr["grad_clip"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
    return ema, time.perf_counter() - start
