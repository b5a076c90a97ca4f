"""One trainer for every assembly, on DeepSpeed.

``Trainer(model, config, examples, run_dir).train(resume=...)`` runs ``train.max_steps`` optimisation
steps of global batch ``train.batch_size`` under ``deepspeed.initialize`` (ZeRO stage, precision, gradient
accumulation and clipping from the recipe). It works as one process or under torchrun / the deepspeed
launcher; only the trained parameters reach the optimizer. The trainer knows assemblies only through a
small contract: ``param_groups()`` (trainable parameters by LR group), ``trained_module`` (the module whose
state a checkpoint holds), ``collate_train(examples) -> (inputs, errors)``, ``forward(**inputs) -> loss`` and
``loss_parts`` (the named parts of that loss, for the log).
Rank 0 writes ``config.yaml``, ``log.jsonl`` and the checkpoints (see :mod:`mmadapt.training.checkpoint`).
Each step's record: the loss, its parts (``losses``: by task, head or dense task; pooled over micro-batches
and ranks), the learning rates, the gradient norm before clipping, samples per second; every record also goes
to the trackers of ``train.report_to`` (:mod:`mmadapt.training.tracking`).

Guards: a step whose loss or any trained gradient is not finite (on any rank) makes no update — the
parameters and optimizer moments stay as they were, the batch, its LR step and its step number (which
checkpoint intervals count, so a resume finds its place in the data) are consumed — and is logged
(``"nonfinite"`` in ``log.jsonl``); ``train.max_nonfinite_steps`` such steps in a row stop the run with a
:class:`~mmadapt.errors.TrainingError`. Fast paths (``train.autocast``, ``train.gradient_checkpointing``,
``train.compile``) are applied by :func:`mmadapt.training.fast_paths.apply_fast_paths`.

Data: ``train.num_workers`` DataLoader workers read the micro-batches ahead (:mod:`mmadapt.data.loader`).
Evaluation during training: every ``train.eval_every`` steps the ``evaluator`` the caller passes scores the
live model (on every rank: the evaluation is sharded); the scores go to ``log.jsonl`` as ``{"step", "eval"}``
records and, with ``train.best_metric``, the best adapter so far is kept in ``best/`` (``best.json`` says
which step and value).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mmadapt.config import Config, TrainConfig, to_plain
from mmadapt.data.examples import draw_target
from mmadapt.data.loader import Background, in_background
from mmadapt.errors import ConfigError, TrainingError
from mmadapt.schedule import cosine_with_warmup
from mmadapt.training import checkpoint as ckpt
from mmadapt.training import curves
from mmadapt.training.data import GlobalBatchOrder
from mmadapt.training.distributed import all_mean, all_mean_parts, barrier, device_for_rank, init_distributed
from mmadapt.training.fast_paths import apply_fast_paths, autocast_context
from mmadapt.training.tracking import open_trackers


def deepspeed_config(train: TrainConfig, world_size: int) -> dict:
    """The DeepSpeed JSON config for ``train`` (global batch, ZeRO stage, precision, clipping)."""
    micro = train.micro_batch_size or train.batch_size // (world_size * train.grad_accum)
    if micro * world_size * train.grad_accum != train.batch_size:
        raise ConfigError(
            f"train.batch_size={train.batch_size} != micro_batch_size {micro} × grad_accum {train.grad_accum} "
            f"× world size {world_size}"
        )
    if train.precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("train.precision: fp16 needs a GPU (DeepSpeed refuses it on CPU); use bf16 or fp32")
    return {
        "train_batch_size": train.batch_size,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_clipping": train.clip_grad,
        "zero_optimization": {"stage": train.zero_stage},
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": train.precision == "fp16"},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def _drop_frozen_aliases(engine) -> None:
    """Keep every name of a frozen parameter out of DeepSpeed's checkpoints.

    ``save_checkpoint(exclude_frozen_parameters=True)`` drops frozen weights by their ``named_parameters()``
    names, which name a shared parameter once; the backbones' aliases (``lm.layers.*``, the tied LM head,
    ``lm.position_embedding``, ``vision.final_norm``) stayed in ``module`` — every checkpoint carried a copy
    of the frozen LM's layers. The adapter's weights and the optimizer state are all a resume needs.
    """
    frozen = {n for n, p in engine.module.named_parameters(remove_duplicate=False) if not p.requires_grad}
    original = engine.module_state_dict

    def module_state_dict(*args, exclude_frozen_parameters: bool = False, **kwargs):
        sd = original(*args, exclude_frozen_parameters=exclude_frozen_parameters, **kwargs)
        if exclude_frozen_parameters and sd is not None:
            for name in frozen.intersection(sd):
                del sd[name]
        return sd

    engine.module_state_dict = module_state_dict


class SkippableAdamW(torch.optim.AdamW):
    """AdamW whose steps are no-ops while ``skip`` is set (the non-finite guard): DeepSpeed's ZeRO optimizers
    call the base optimizer once per parameter group, so the trainer sets and clears the flag around a step."""

    skip = False

    def step(self, closure=None):
        if self.skip:
            return None
        return super().step(closure)


class NonFiniteGradients:
    """Tensor hooks on the trained parameters that note a NaN / Inf gradient (before DeepSpeed reduces or
    partitions it); ``take()`` returns and clears the note."""

    def __init__(self, params):
        self.seen = False
        self.handles = [p.register_hook(self._check) for p in params]

    def _check(self, grad: torch.Tensor) -> None:
        if not self.seen and not bool(torch.isfinite(grad).all()):
            self.seen = True

    def take(self) -> bool:
        seen, self.seen = self.seen, False
        return seen


class MicroBatch:
    """One job of the training data: ``(step, k)`` → this rank's ``k``-th micro-batch of ``step``, its targets
    drawn (:func:`~mmadapt.data.examples.draw_target`) and collated by the assembly (``(inputs, errors)``)."""

    def __init__(self, examples: list, order: GlobalBatchOrder, collate, seed: int):
        self.examples, self.order, self.collate, self.seed = examples, order, collate, seed

    def __call__(self, job: tuple[int, int]):
        """``(inputs, errors, task)``: ``task`` is the micro-batch's one task (None where it mixes several)."""
        step, k = job
        micro = self.order.micro_batches(step)[k]
        tasks = {self.examples[i].task for i in micro}
        inputs, errors = self.collate([draw_target(self.examples[i], self.seed, step, i) for i in micro])
        return inputs, errors, (tasks.pop() if len(tasks) == 1 else None)


class Trainer:
    def __init__(self, model: torch.nn.Module, config: Config, examples: list, run_dir: str | Path,
                 quiet: bool = False, evaluator: Callable[[int], dict[str, float]] | None = None):
        self.config = config
        self.train_cfg = config.train
        self.model = model
        self.examples = examples
        self.run_dir = Path(run_dir)
        self.quiet = quiet
        # ``evaluator(step)`` → flat scores of the live model (every rank calls it; see train.eval_every)
        self.evaluator = evaluator
        self.evaluations: list[dict] = []  # the records of those evaluations (also in log.jsonl)
        self.best: dict | None = None  # {"step", "metric", "value"} of the adapter in best/
        if not examples:
            raise ConfigError("tasks: no training examples (does any task have a `train` dataset?)")
        self.rank, self.world = init_distributed()
        self.device = device_for_rank()
        torch.manual_seed(self.train_cfg.seed)
        apply_fast_paths(model, self.train_cfg)
        model.every_branch_each_step = self.train_cfg.zero_stage == 3 and self.world > 1
        self.engine = self._build_engine()
        self.grad_check = NonFiniteGradients([p for p in model.parameters() if p.requires_grad])
        self.order = GlobalBatchOrder(len(examples), self.train_cfg.batch_size, self.world, self.rank,
                                      self.train_cfg.grad_accum, self.train_cfg.seed)
        self.step = 0
        self.trackers: list = []  # rank 0's, while train() runs (train.report_to)
        self._plotted_at = time.perf_counter()  # when curves.png was last drawn (first: one interval in)

    # --------------------------------------------------------------------------------------------- setup
    def _build_engine(self):
        import deepspeed

        groups = self.model.param_groups()
        lrs = {"default": self.train_cfg.lr, "prompt": self.train_cfg.prompt_lr}
        param_groups = [
            {"params": [p for p in params if p.requires_grad], "lr": lrs.get(name, self.train_cfg.lr), "name": name}
            for name, params in groups.items()
        ]
        optimizer = SkippableAdamW(param_groups, weight_decay=self.train_cfg.weight_decay)
        cfg = self.train_cfg
        schedule = cosine_with_warmup(cfg.warmup_steps, cfg.max_steps, cfg.min_lr_ratio)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        self.model.to(self.device)
        engine, _, _, _ = deepspeed.initialize(
            model=self.model, optimizer=optimizer, lr_scheduler=scheduler,
            config=deepspeed_config(self.train_cfg, self.world),
        )
        _drop_frozen_aliases(engine)
        engine.checkpoint_engine = ckpt.weights_only_checkpoint_engine(engine._config)
        return engine

    @property
    def module(self):
        return self.engine.module

    # ---------------------------------------------------------------------------------------- training
    def train(self, resume: bool = False) -> list[dict]:
        """Run to ``train.max_steps``; returns the logged records. ``resume`` continues the latest checkpoint."""
        if getattr(self, "_released", False):
            raise RuntimeError("this ZeRO-3 Trainer has handed its model back; build a new Trainer to train again")
        if resume:
            self._resume()
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # what is actually trained: the model section is the assembly's own (a wrapped model's backbones, the
            # heads sized by the data), not the recipe's
            recorded = dataclasses.replace(self.config, model=self.module.config)
            (self.run_dir / "config.yaml").write_text(recorded.to_yaml())
            self.trackers = open_trackers(self.train_cfg.report_to, self.run_dir, to_plain(recorded),
                                          self.train_cfg.wandb_project)
        try:
            records = self._train_loop()
        finally:
            for tracker in self.trackers:
                tracker.close()
            self.trackers = []
        if self.rank == 0:
            self._plot()
        return records

    def _train_loop(self) -> list[dict]:
        records: list[dict] = []
        total = self.train_cfg.max_steps
        bar = tqdm(total=total, initial=self.step, disable=self.quiet or self.rank != 0, desc="train", unit="step")
        self.module.train()
        t0 = time.perf_counter()
        nonfinite_run: list[int] = []  # the steps of the current run of non-finite steps
        ga = self.train_cfg.grad_accum
        batches = self._micro_batches(self.step, total)
        while self.step < total:
            step_start = time.perf_counter()
            losses, skipped, nonfinite, parts = [], [], set(), {}
            for k in range(ga):
                inputs, errors, task = next(batches)
                skipped.extend(errors)
                if inputs is None:
                    raise RuntimeError(f"step {self.step}: every example of a micro-batch failed: {errors[:3]}")
                with autocast_context(self.train_cfg, self.device):
                    loss = self.engine(**inputs)
                if not bool(torch.isfinite(loss)):
                    nonfinite.add("loss")
                self.engine.backward(loss)
                if self.grad_check.take():
                    nonfinite.add("gradient")
                if k == ga - 1:  # the optimizer steps now: skip it on every rank if any rank saw one
                    skip = all_mean(float(bool(nonfinite))) > 0
                    self._base_optimizer().skip = skip
                    skipped_before = self.engine.skipped_steps
                    grad_norm = self._grad_norm_before_step()
                self.engine.step()
                losses.append(loss.item())
                named = self.module.loss_parts or ({task: loss.detach()} if task is not None else {})
                for name, value in named.items():
                    parts.setdefault(name, []).append(float(value))
            self._base_optimizer().skip = False
            if skip and self.engine.skipped_steps > skipped_before and self.engine.lr_scheduler is not None:
                self.engine.lr_scheduler.step()  # DeepSpeed skipped it too (its overflow check): keep LR = f(step)
            self.step += 1
            loss_value = all_mean(sum(losses) / len(losses))
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}")
            grad_norm = grad_norm if grad_norm is not None else self.engine.get_global_grad_norm()
            step_seconds = time.perf_counter() - step_start
            record = {"step": self.step, "loss": loss_value, "losses": all_mean_parts(parts), "lr": self._lrs(),
                      "grad_norm": None if grad_norm is None else float(grad_norm),
                      "samples_per_s": round(self.train_cfg.batch_size / step_seconds, 3),
                      "epoch": round(self.order.epochs(self.step), 4), "time": round(time.perf_counter() - t0, 3)}
            if skipped:
                record["skipped"] = skipped
            if skip:
                record["nonfinite"] = sorted(nonfinite) or ["another rank"]
                nonfinite_run.append(self.step)
            else:
                nonfinite_run.clear()
            records.append(record)
            if self.rank == 0 and (self.step % self.train_cfg.log_every == 0 or self.step == total or skipped or skip):
                self._log(record)
            if len(nonfinite_run) >= self.train_cfg.max_nonfinite_steps:
                bar.close()
                latest = ckpt.latest_checkpoint(self.run_dir)
                raise TrainingError(
                    f"train: {len(nonfinite_run)} steps in a row (steps {nonfinite_run[0]}–{nonfinite_run[-1]}) had a "
                    f"non-finite {' / '.join(record['nonfinite'])}; stopped (train.max_nonfinite_steps="
                    f"{self.train_cfg.max_nonfinite_steps}). None of them changed the adapter; the last checkpoint "
                    f"is {latest or 'none yet'}. Lower train.lr, keep train.clip_grad on, use fp32, or check those "
                    f"steps' inputs ({self.run_dir / 'log.jsonl'})."
                )
            if (self.train_cfg.save_every and self.step % self.train_cfg.save_every == 0) or self.step == total:
                self.save_checkpoint()
            if self.evaluator is not None and self.train_cfg.eval_every and self.step % self.train_cfg.eval_every == 0:
                self.evaluations.append(self._evaluate_now(t0))
        bar.close()
        skipped_all = [e for r in records for e in r.get("skipped", [])]
        if skipped_all and self.rank == 0:
            print(f"warning: train: {len(skipped_all)} training sample(s) could not be read and were skipped "
                  f"(first: {skipped_all[0]}); each is listed under \"skipped\" in {self.run_dir / 'log.jsonl'}",
                  file=sys.stderr)
        if self.train_cfg.zero_stage == 3:
            self._release_zero3()
        return records

    def _evaluate_now(self, t0: float) -> dict:
        """Evaluate the live model (no copy of it), log the scores, keep the best adapter by ``best_metric``."""
        cfg = self.train_cfg
        started = time.perf_counter()
        if cfg.zero_stage == 3:  # every parameter whole while evaluating: the ranks run different batches
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                scores = self.evaluator(self.step)
        else:
            scores = self.evaluator(self.step)
        self.module.train()
        record = {"step": self.step, "eval": scores, "eval_seconds": round(time.perf_counter() - started, 3),
                  "time": round(time.perf_counter() - t0, 3)}
        if cfg.best_metric is not None:
            if cfg.best_metric not in scores:
                raise ConfigError(f"train.best_metric: {cfg.best_metric!r} is not among the scores of the evaluation "
                                  f"at step {self.step}: {', '.join(sorted(scores))}")
            value = scores[cfg.best_metric]
            better = self.best is None or (value > self.best["value"] if cfg.best_mode == "max"
                                           else value < self.best["value"])
            if better:
                self.best = {"step": self.step, "metric": cfg.best_metric, "value": value}
                self._save_best()
            record["best"] = dict(self.best)
        if self.rank == 0:
            self._log(record)
        return record

    def _log(self, record: dict) -> None:
        """One record into ``log.jsonl`` and to every tracker (rank 0)."""
        with open(self.run_dir / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        for tracker in self.trackers:
            tracker.log(record)
        if time.perf_counter() - self._plotted_at >= curves.MIN_INTERVAL_S:
            self._plot()

    def _plot(self) -> None:
        """Redraw ``curves.png`` from the whole ``log.jsonl`` (a resumed run's earlier steps too)."""
        curves.plot_run(curves.read_log(self.run_dir), self.run_dir / curves.CURVES_FILE, title=self.run_dir.name)
        self._plotted_at = time.perf_counter()

    def _grad_norm_before_step(self) -> float | None:
        """The global gradient norm before clipping, for the log. ZeRO 1–3 compute it in their step
        (``engine.get_global_grad_norm()`` after it: None here); under ZeRO-0 the gradients are whole and
        averaged on every rank by now, and DeepSpeed keeps no norm, so it is computed here."""
        if self.train_cfg.zero_stage > 0:
            return None
        grads = [p.grad.detach().float() for p in self.module.parameters() if p.requires_grad and p.grad is not None]
        if not grads:
            return None
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))

    def _save_best(self) -> None:
        """The adapter as it is now into ``best/`` (written aside, then swapped in), with ``best.json``."""
        state = self.adapter_state_dict()  # collective under ZeRO-3
        if self.rank == 0:
            best, tmp = self.run_dir / "best", self.run_dir / ".tmp-best"
            if tmp.exists():
                shutil.rmtree(tmp)
            self.module.save_pretrained(tmp, state_dict=state)
            ckpt.write_json(tmp / "best.json", self.best)
            if best.exists():
                old = self.run_dir / ".old-best"
                best.replace(old)
                tmp.replace(best)
                shutil.rmtree(old)
            else:
                tmp.replace(best)
        barrier()

    def _micro_batches(self, start: int, total: int):
        """The collated micro-batches of steps ``start`` … ``total - 1``, in order, read ahead by
        ``train.num_workers`` DataLoader workers (0: here, between steps); see :mod:`mmadapt.data.loader`."""
        cfg = self.train_cfg
        jobs = [(step, k) for step in range(start, total) for k in range(cfg.grad_accum)]
        how = Background(num_workers=cfg.num_workers, prefetch_factor=cfg.prefetch_factor,
                         worker_threads=cfg.worker_threads, pin_memory=self.device.type == "cuda")
        return in_background(jobs, MicroBatch(self.examples, self.order, self.module.collate_train, cfg.seed), how,
                             seed=cfg.seed)

    def _release_zero3(self) -> None:
        """Hand the model back whole after ZeRO-3 training.

        ZeRO-3 leaves every parameter partitioned across ranks (``param.data`` is an empty tensor outside a
        forward), so the module that :meth:`train` returns would save an *empty* adapter with
        ``save_pretrained`` and could not be evaluated or trained again. Gather each parameter (collective:
        every rank calls this), switch off DeepSpeed's hooks and put plain parameters in place (tied
        parameters stay tied). The engine cannot step any more afterwards.
        """
        import deepspeed

        module = self.module
        whole: dict[int, torch.nn.Parameter] = {}
        for p in module.parameters():
            with deepspeed.zero.GatheredParameters([p], modifier_rank=None):
                whole[id(p)] = torch.nn.Parameter(p.data.detach().clone(), requires_grad=p.requires_grad)
        self.engine.destroy()  # removes ZeRO-3's module hooks
        for name in ("module_forward_pre_hook", "module_forward_post_hook"):
            hook = getattr(self.engine, name, None)
            if hook is not None:
                hook.remove()
        for sub in module.modules():  # also drops DeepSpeed's auto-gathering ZeROOrderedDict
            sub._parameters = {k: (None if p is None else whole[id(p)]) for k, p in sub._parameters.items()}
        self._released = True

    def _base_optimizer(self) -> SkippableAdamW:
        """The AdamW this trainer built (ZeRO 1–3 wrap it as ``engine.optimizer.optimizer``)."""
        opt = self.engine.optimizer
        return opt if isinstance(opt, SkippableAdamW) else opt.optimizer

    def _lrs(self) -> dict[str, float]:
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(self.engine.optimizer.param_groups)}

    # -------------------------------------------------------------------------------------- checkpoints
    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        """Full weights of the trained parts on every rank (gathered from the ZeRO-3 partitions when needed)."""
        import deepspeed

        trained = self.module.trained_module
        params = list(trained.parameters())
        if self.train_cfg.zero_stage == 3:
            with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
                return {k: v.detach().clone().cpu() for k, v in trained.state_dict().items()}
        return {k: v.detach().clone().cpu() for k, v in trained.state_dict().items()}

    def save_checkpoint(self) -> Path:
        tmp = ckpt.temp_dir(self.run_dir, self.step)
        state = self.adapter_state_dict()  # collective under ZeRO-3: every rank calls it
        if self.rank == 0:
            tmp.mkdir(parents=True, exist_ok=True)
            self.module.save_pretrained(tmp, state_dict=state)
        barrier()
        self.engine.save_checkpoint(str(tmp), tag="deepspeed", save_latest=False, exclude_frozen_parameters=True)
        if self.rank == 0:  # data order is a function of the step; the torch RNG covers everything else
            save_file({"torch": torch.get_rng_state()}, str(tmp / "rng_state.safetensors"))
            ckpt.write_json(tmp / "trainer_state.json", {"step": self.step, "world_size": self.world})
        barrier()
        final = ckpt.checkpoint_dir(self.run_dir, self.step)
        if self.rank == 0:
            final = ckpt.finalize(self.run_dir, self.step, self.train_cfg.keep_checkpoints)
        barrier()
        return final

    def _universal_checkpoint(self, latest: Path) -> Path:
        """``latest`` (written by another number of ranks, ZeRO 1–3: optimizer state partitioned by rank) as
        DeepSpeed's universal checkpoint, which any number of ranks loads: converted once by rank 0 next to it
        (``checkpoints/.universal-step-N``, pruned with it), and the engine switched to loading it."""
        out = latest.parent / f".universal-{latest.name}"
        if self.rank == 0 and not (out / "deepspeed").is_dir():
            ckpt.to_universal(latest / "deepspeed", out / "deepspeed")
        barrier()
        self.engine._config.load_universal_checkpoint = True
        return out

    def _resume(self) -> None:
        latest = ckpt.latest_checkpoint(self.run_dir)
        if latest is None:
            raise ConfigError(f"--resume: no complete checkpoint under {self.run_dir / 'checkpoints'}")
        state = json.loads((latest / "trainer_state.json").read_text())
        source, elastic = latest, int(state["world_size"]) != self.world and self.train_cfg.zero_stage > 0
        if elastic:
            source = self._universal_checkpoint(latest)
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.engine.optimizer.param_groups]
        try:
            with ckpt.weights_only_loads():
                self.engine.load_checkpoint(str(source), tag="deepspeed", load_module_strict=False)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[-1][:300]
            raise TrainingError(f"--resume: {latest / 'deepspeed'}: refused by torch.load(weights_only=True) — a "
                                f"file this library did not write, or a tampered one ({first})") from None
        if elastic:  # DeepSpeed's universal loader gives every group the first one's settings (lr, prompt_lr)
            last_lr = self.engine.lr_scheduler.get_last_lr()
            for group, own, lr in zip(self.engine.optimizer.param_groups, groups, last_lr):
                group.update({**own, "lr": lr})
            ckpt.unshare_step_counters(self.engine.optimizer.optimizer)
        adapter_state = load_file(str(latest / "adapter_model.safetensors"))
        import deepspeed

        trained = self.module.trained_module
        params = list(trained.parameters())
        if self.train_cfg.zero_stage == 3:
            with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
                trained.load_state_dict(adapter_state)
        else:
            trained.load_state_dict(adapter_state)
        best = self.run_dir / "best" / "best.json"
        if best.is_file():  # the best adapter so far stays the one to beat
            self.best = json.loads(best.read_text())
        rng = load_file(str(latest / "rng_state.safetensors"))
        torch.set_rng_state(rng["torch"])
        self.step = int(state["step"])
        log = self.run_dir / "log.jsonl"
        if self.rank == 0 and log.is_file():  # a killed run may have logged steps past its last checkpoint
            lines = [ln for ln in log.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= self.step]
            tmp = log.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(ln + "\n" for ln in lines))
            tmp.replace(log)

