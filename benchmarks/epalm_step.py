"""eP-ALM train-step benchmark at real sizes: OPT-125m + ViT-B/16, random weights, CPU, no download.

(One file over 400 lines on purpose: it is both the parent that launches each phase and the child that runs
it, and reads top to bottom — model, phases, report; other benchmarks import its ``build_model``.)

    python benchmarks/epalm_step.py [--batch 8] [--steps 5] [--warmup 1] [--threads N] [--json out.json]

What is built (from configs, random init: speed does not depend on the weights):

- LM: ``OPTConfig`` with OPT-125m's sizes (hidden 768, 12 layers, 12 heads, ffn 3072, vocab 50272,
  max positions 2048), SDPA attention, fp32, frozen.
- Vision: ``ViTConfig`` defaults = ViT-B/16 (224 px, patch 16 → 196 + 1 tokens, hidden 768, 12 layers,
  12 heads, mlp 3072), no pooler, SDPA, fp32, frozen.
- Adapter: ``EPALMConfig()`` defaults (n_injected 6, prompt_len 10, one connector per injected layer).
  ``start``/``end`` left at ``None``: the paper's window (OPT-2.7B: layers 19→31 of 32, the ``2·n`` layers
  before the last) is ``[5, 11)`` for 12 layers; every layer of it writes (one token each, as ``[6, 12)``
  did before the window followed the authors: the same six injection layers, so the same cost).
- Text: batch of VQA prompts ``"question: {q} answer:"`` + a short answer, tokenised by a word-level HF
  ``tokenizers`` tokenizer built here whose vocabulary is padded to 50272 ids (OPT's embedding size). The
  questions are 16–18 words, giving 24–28 text tokens per sample with BOS and EOS (LM length 39 with the
  11 adapter columns).

Each measured phase runs in its own fresh subprocess so that peak memories are separable: the child builds
the model, reads its resident size, resets the kernel's high-water mark (``/proc/self/clear_refs`` ← 5),
runs the phase and reads ``VmHWM`` from ``/proc/self/status``. Phases:

- ``matmul``: this machine's dense fp32 ``torch.mm`` throughput, 2048×2048 @ 2048×2048 (2·n³ FLOPs each),
  median over repeats; run before *and* after the other phases (the CPU is shared; both are reported and
  the ratio uses the median of all repeats).
- ``infer``: ``model(...)`` under ``torch.no_grad()`` (ViT + LM + head on scored positions, the loss),
  plus the frozen ViT's ``layer_cls`` alone (for the breakdown).
- ``train``: ``model(...)`` → ``loss.backward()`` → ``AdamW.step()`` on the adapter's parameters only
  (``zero_grad(set_to_none=True)`` each step). Median / min / max over ``--steps`` after ``--warmup``.

FLOP count (model FLOPs, analytic; a multiply-add = 2 FLOPs; only matmuls; norms, softmax, GELU, the
mask hooks and the optimizer update are not counted — AdamW on ~3.5M parameters is ~10 FLOPs/param, noise):

    ViT   per image  = 2·196·(3·16·16)·d_v                                  (patch embedding)
                     + n_v·[ 2·N·(4·d_v² + 2·d_v·f_v) + 4·N²·d_v ]         (N = 197 tokens)
    LM    forward    = n_l·[ 2·B·L·(4·d² + 2·d·f) + 4·B·L²·d ]             (L = padded length incl. the
                                                                           11 adapter columns; attention
                                                                           counted dense L², as computed)
    head  forward    = 2·S·d·V                                              (S = scored positions: logits are
                                                                           computed only there)
    connectors fwd   = 2·B·n_inj·d_v·d
    LM    backward   = n_l·[ 2·B·L·(4·d² + 2·d·f) + 8·B·L²·d ]             activation gradients only: the LM
                     + 2·S·d·V                                               is frozen so no weight gradients;
                                                                           every linear costs 1× its forward
                                                                           (dX = dY·Wᵀ); attention 2× (dQ, dK
                                                                           from dScores, dV and dP, all four
                                                                           operands are activations); the
                                                                           gradient has to reach layer 0
                                                                           because the soft prompt enters at
                                                                           the input.
    connectors bwd   = 2·B·n_inj·d_v·d                                      (weight gradients; no input
                                                                           gradient: the ViT runs under
                                                                           no_grad)
    train step       = B·ViT + LM fwd + head fwd + conn fwd + LM bwd + conn bwd     (ViT: forward only)
    inference fwd    = B·ViT + LM fwd + head fwd + conn fwd

achieved FLOP/s = FLOPs / median time; ratio = achieved / measured dense-matmul FLOP/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (environment, loadavg, mib, proc_status, reset_peak, run_json_child,  # noqa: E402
                     write_json)

# Real sizes.
OPT125M = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, ffn_dim=3072, vocab_size=50272,
               max_position_embeddings=2048, word_embed_proj_dim=768)
VIT_B16 = dict(image_size=224, patch_size=16, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
               intermediate_size=3072)

# Realistic VQA v2-style questions (16–18 words) and short answers.
QA = [
    ("what color is the umbrella that the woman standing on the left side of the street is holding?", "red"),
    ("how many people are sitting on the wooden bench in front of the large brick building?", "3"),
    ("is the man in the blue shirt who is riding the bicycle wearing a helmet on his head?", "yes"),
    ("what kind of animal is lying on the couch next to the window in the living room?", "cat"),
    ("what is the name of the sport that the two children are playing in the park?", "soccer"),
    ("what is on top of the pizza that is sitting on the white plate on the kitchen table?",
     "pepperoni and cheese"),
    ("are there any clouds visible in the sky above the tall buildings in the background of this photo?",
     "no"),
    ("which hand is the young girl in the pink dress using to hold the ice cream cone?", "left"),
]
PROMPT = "question: {q} answer:"


# ----------------------------------------------------------------------------------------- fast paths
#: the library's training fast paths (``train.*`` recipe keys, mmadapt/training/fast_paths.py), one per variant
VARIANTS = {
    "fp32": {},
    "bf16": {"autocast": "bf16"},
    # bf16 autocast with the frozen backbones stored in bf16 (recipe: model.lm.dtype / model.vision.dtype =
    # bfloat16), so no fp32 weight is cast to bf16 at every matmul; the adapter and its optimizer stay fp32
    "bf16_frozen": {"autocast": "bf16", "frozen_dtype": "bfloat16"},
    "checkpointing": {"gradient_checkpointing": True},
    "compile": {"compile": True},
}


def apply_variant(model, variant: str):
    """Apply a variant's fast paths to ``model`` the way the trainer does; returns the train settings."""
    from mmadapt.config import TrainConfig
    from mmadapt.training.fast_paths import apply_fast_paths

    import torch

    settings = dict(VARIANTS[variant])
    frozen_dtype = settings.pop("frozen_dtype", None)
    if frozen_dtype is not None:  # as load_lm / load_vision_encoder do for a recipe's dtype
        model.lm.model.to(getattr(torch, frozen_dtype))
        model.vision.to(getattr(torch, frozen_dtype))
    fast = TrainConfig(**settings)
    apply_fast_paths(model, fast)
    return fast


# --------------------------------------------------------------------------------------------- helpers
def stats(times: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times),
            "all_s": times}


def word_tokenizer(vocab_size: int):
    """Word-level tokenizer, OPT-style ids (<s>=0, <pad>=1, </s>=2 as BOS and EOS, <unk>=3), padded to
    ``vocab_size`` ids so it matches OPT-125m's embedding matrix."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    split = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    words = {"question", "answer", ":", "?", "."}
    for q, a in QA:
        words.update(w for w, _ in split.pre_tokenize_str(f"{q} {a}".lower()))
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    while len(vocab) < vocab_size:
        vocab[f"<extra_{len(vocab)}>"] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = split
    tk.post_processor = processors.TemplateProcessing(single="</s> $A", special_tokens=[("</s>", 2)])
    tk.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="</s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


def build_model(seed: int = 0):
    """OPT-125m + ViT-B/16 (random, frozen) + eP-ALM (paper defaults) → PerceptualLM."""
    import torch
    from transformers import OPTConfig, OPTForCausalLM, ViTConfig, ViTImageProcessor, ViTModel

    from mmadapt.adapters.epalm import EPALM, EPALMConfig
    from mmadapt.backbones.lm import CausalLM
    from mmadapt.backbones.vision import HFViT
    from mmadapt.config import BackboneConfig, ModelConfig
    from mmadapt.models.perceptual_lm import PerceptualLM

    torch.manual_seed(seed)
    tok = word_tokenizer(OPT125M["vocab_size"])
    lm_cfg = OPTConfig(**OPT125M, pad_token_id=1, bos_token_id=2, eos_token_id=2, dropout=0.0,
                       attention_dropout=0.0, do_layer_norm_before=True)
    lm_cfg._attn_implementation = "sdpa"
    lm_model = OPTForCausalLM(lm_cfg)
    lm_model.config._attn_implementation = "sdpa"
    lm = CausalLM(lm_model, tok)

    vit_cfg = ViTConfig(**VIT_B16)
    vit_cfg._attn_implementation = "sdpa"
    vit_model = ViTModel(vit_cfg, add_pooling_layer=False)
    vit_model.config._attn_implementation = "sdpa"
    proc = ViTImageProcessor(size={"height": 224, "width": 224})
    vision = HFViT(vit_model, proc, vit_model.layernorm, identity="bench:vit-b16-random")

    adapter_cfg = EPALMConfig()
    adapter_cfg.validate()
    torch.manual_seed(seed + 1)
    adapter = EPALM(adapter_cfg, lm, vision)
    model_cfg = ModelConfig(lm=BackboneConfig(name="bench:opt-125m-random"),
                            vision=BackboneConfig(name="bench:vit-b16-random", kind="hf_vit"),
                            adapter=adapter_cfg)
    return PerceptualLM(model_cfg, lm, vision, adapter)


def make_batch(batch: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch, 3, VIT_B16["image_size"], VIT_B16["image_size"], generator=g)
    pairs = [QA[i % len(QA)] for i in range(batch)]
    return pixels, [PROMPT.format(q=q) for q, _ in pairs], [a for _, a in pairs]


# ------------------------------------------------------------------------------------------- FLOPs
def count_flops(batch: int, padded_text_len: int, n_prefix: int, scored: int, n_injected: int) -> dict:
    """Analytic matmul FLOPs (see the module docstring)."""
    d, f, n_l, V = OPT125M["hidden_size"], OPT125M["ffn_dim"], OPT125M["num_hidden_layers"], OPT125M["vocab_size"]
    dv, fv, n_v = VIT_B16["hidden_size"], VIT_B16["intermediate_size"], VIT_B16["num_hidden_layers"]
    p = VIT_B16["patch_size"]
    n_patches = (VIT_B16["image_size"] // p) ** 2
    N = n_patches + 1
    vit_img = 2 * n_patches * (3 * p * p) * dv + n_v * (2 * N * (4 * dv * dv + 2 * dv * fv) + 4 * N * N * dv)
    L = n_prefix + padded_text_len
    B = batch
    lm_linear = n_l * 2 * B * L * (4 * d * d + 2 * d * f)
    lm_attn = n_l * 4 * B * L * L * d
    head = 2 * scored * d * V
    conn = 2 * B * n_injected * dv * d
    parts = {
        "vit_forward": B * vit_img,
        "lm_forward_linear": lm_linear,
        "lm_forward_attention": lm_attn,
        "head_forward": head,
        "connectors_forward": conn,
        "lm_backward_linear": lm_linear,
        "lm_backward_attention": 2 * lm_attn,
        "head_backward": head,
        "connectors_backward": conn,
    }
    infer = sum(v for k, v in parts.items() if "backward" not in k)
    return {"parts": parts, "train_step": sum(parts.values()), "inference_forward": infer,
            "lm_seq_len": L, "lm_tokens": B * L, "scored_positions": scored, "vit_per_image": vit_img}


# ------------------------------------------------------------------------------------------ phases
def phase_matmul(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    n = args.mm_size
    g = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if VARIANTS[args.variant].get("autocast") == "bf16" else torch.float32
    a, b = torch.randn(n, n, generator=g).to(dtype), torch.randn(n, n, generator=g).to(dtype)
    for _ in range(2):
        torch.mm(a, b)
    times = []
    for _ in range(args.mm_repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - t0)
    flops = 2 * n ** 3
    return {"size": n, "dtype": str(dtype).removeprefix("torch."), "flops_per_mm": flops, **stats(times),
            "flops_per_s": flops / statistics.median(times)}


def phase_model(args, train: bool) -> dict:
    import torch

    from mmadapt.training.fast_paths import autocast_context

    torch.set_num_threads(args.threads)
    model = build_model(args.seed)
    fast = apply_variant(model, args.variant)
    pixels, prefix, target = make_batch(args.batch, args.seed)
    text = model.tokenize(prefix, target, 0.1)
    lengths = text.mask.sum(dim=1).tolist()
    info = {
        "text_tokens_per_sample": lengths,
        "padded_text_len": int(text.ids.shape[1]),
        "n_prefix": model.adapter.n_prefix,
        "scored_positions": int((text.weights[:, 1:] != 0).sum()),
        "injection_layers": model.adapter.layers,
        "trainable_params": sum(p.numel() for p in model.trainable_parameters()),
        "total_params": sum(p.numel() for p in model.parameters()),
        "lm_params": sum(p.numel() for p in model.lm.parameters()),
        "vision_params": sum(p.numel() for p in model.vision.parameters()),
        "attn_implementation": {"lm": model.lm.model.config._attn_implementation,
                                "vision": model.vision.model.config._attn_implementation},
    }
    if train:
        model.train()
        opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4, weight_decay=0.02)
    else:
        model.eval()
    before = proc_status()
    info["rss_before_mib"] = mib(before["VmRSS"])
    info["hwm_build_mib"] = mib(before["VmHWM"])
    info["hwm_reset"] = reset_peak()

    split = {"forward": [], "backward": [], "optimizer": []}

    def train_step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast_context(fast, torch.device("cpu")):
            loss = model(pixels, prefix, target, 0.1)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        for k, dt in zip(split, (t1 - t0, t2 - t1, t3 - t2)):
            split[k].append(dt)
        return loss

    def infer_step():
        with torch.no_grad(), autocast_context(fast, torch.device("cpu")):
            return model(pixels, prefix, target, 0.1)

    step = train_step if train else infer_step
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = step()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {i}: {loss.item()}")
    after = proc_status()
    info["hwm_phase_mib"] = mib(after["VmHWM"])
    info["peak_delta_mib"] = mib(after["VmHWM"] - before["VmRSS"])
    info["rss_after_mib"] = mib(after["VmRSS"])
    info["time"] = stats(times)
    info["loss"] = float(loss)
    if train:  # per-part split of the timed steps; frozen means frozen: no gradients reached the backbones
        info["time_split"] = {k: stats(v[args.warmup:]) for k, v in split.items()}
        info["frozen_grads"] = sum(p.grad is not None for p in list(model.lm.parameters())
                                   + list(model.vision.parameters()))
        info["optimizer_state_tensors"] = sum(len(s) for s in opt.state.values())
    else:  # the frozen encoder alone, for the breakdown (after the peak was read)
        vt = []
        with torch.no_grad(), autocast_context(fast, torch.device("cpu")):
            for i in range(1 + max(1, args.steps // 2)):
                t0 = time.perf_counter()
                model.vision.layer_cls(pixels)
                if i >= 1:
                    vt.append(time.perf_counter() - t0)
        info["vision_time"] = stats(vt)
    return info


def run_child(phase: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", phase, "--batch", str(args.batch),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
           "--seed", str(args.seed), "--mm-size", str(args.mm_size), "--mm-repeats", str(args.mm_repeats),
           "--variant", args.variant]
    result = run_json_child(cmd, f"phase {phase!r}")
    print(f"  {phase:<7} done in {result['wall_s']:.1f} s", file=sys.stderr, flush=True)
    return result


# ------------------------------------------------------------------------------------------- report
def report(res: dict) -> str:
    tr, inf, fl, mm = res["train"], res["infer"], res["flops"], res["matmul"]
    g = 1e9
    lines = []
    add = lines.append
    add("eP-ALM step benchmark — OPT-125m + ViT-B/16 (random weights, fp32, CPU)")
    add(f"  torch {res['env']['torch']}, transformers {res['env']['transformers']}, {res['env']['cpu']}, "
        f"{res['env']['threads']} threads, loadavg start {res['env']['loadavg_start']} end {res['env']['loadavg_end']}")
    add(f"  batch {res['batch']}, text tokens/sample {tr['text_tokens_per_sample']} (padded {tr['padded_text_len']}), "
        f"+{tr['n_prefix']} adapter columns → LM length {fl['lm_seq_len']}, scored positions {fl['scored_positions']}")
    add(f"  injection layers {tr['injection_layers']}, attention {tr['attn_implementation']}")
    add(f"  trainable params {tr['trainable_params']:,} of {tr['total_params']:,} "
        f"({100 * tr['trainable_params'] / tr['total_params']:.3f}%)  [LM {tr['lm_params']:,}, "
        f"ViT {tr['vision_params']:,}]")
    add("")
    w = 34
    add(f"{'':<{w}}{'median':>10}{'min':>10}{'max':>10}")
    for name, t in [("train step (fwd+bwd+AdamW) [s]", tr["time"]),
                    ("  forward (loss) [s]", tr["time_split"]["forward"]),
                    ("  backward [s]", tr["time_split"]["backward"]),
                    ("  AdamW step [s]", tr["time_split"]["optimizer"]),
                    ("inference forward [s]", inf["time"]),
                    ("  ViT-B/16 forward alone [s]", inf["vision_time"])]:
        add(f"{name:<{w}}{t['median_s']:>10.3f}{t['min_s']:>10.3f}{t['max_s']:>10.3f}")
    add(f"{'dense fp32 mm ' + str(mm['size']) + '² [s]':<{w}}{mm['median_s']:>10.4f}{mm['min_s']:>10.4f}"
        f"{mm['max_s']:>10.4f}")
    add("")
    add(f"{'memory (MiB)':<{w}}{'model RSS':>12}{'phase peak':>12}{'Δ peak':>10}")
    for name, m in [("train", tr), ("inference", inf)]:
        add(f"{name:<{w}}{m['rss_before_mib']:>12.0f}{m['hwm_phase_mib']:>12.0f}{m['peak_delta_mib']:>10.0f}")
    add(f"  train / inference peak: {tr['hwm_phase_mib'] / inf['hwm_phase_mib']:.2f}× "
        f"(Δ above model: {tr['peak_delta_mib'] / max(inf['peak_delta_mib'], 1e-9):.2f}×)"
        + ("" if tr["hwm_reset"] and inf["hwm_reset"] else "  [VmHWM reset failed: peaks include model build]"))
    add("")
    add("FLOPs (analytic, matmuls only; see docstring)          GFLOP")
    for k, v in fl["parts"].items():
        add(f"  {k:<52}{v / g:>8.2f}")
    add(f"  {'train step total':<52}{fl['train_step'] / g:>8.2f}")
    add(f"  {'inference forward total':<52}{fl['inference_forward'] / g:>8.2f}")
    add("")
    add(f"{'throughput':<{w}}{'GFLOP/s':>10}{'/ dense':>10}")
    add(f"{'dense fp32 matmul (median)':<{w}}{mm['flops_per_s'] / g:>10.1f}{1:>10.2f}")
    for name, key in [("train step", "train"), ("inference forward", "infer")]:
        add(f"{name:<{w}}{res['achieved'][key] / g:>10.1f}{res['ratio'][key]:>10.2f}")
    bwd = sum(v for k, v in fl["parts"].items() if "backward" in k)
    add(f"{'  backward alone':<{w}}{bwd / tr['time_split']['backward']['median_s'] / g:>10.1f}"
        f"{bwd / tr['time_split']['backward']['median_s'] / mm['flops_per_s']:>10.2f}")
    add(f"  matmul per run: before {res['matmul_runs'][0]['flops_per_s'] / g:.1f}, "
        f"after {res['matmul_runs'][1]['flops_per_s'] / g:.1f} GFLOP/s")
    add(f"  samples/s (train): {res['batch'] / tr['time']['median_s']:.2f}; "
        f"ViT share of train FLOPs: {100 * fl['parts']['vit_forward'] / fl['train_step']:.0f}%")
    return "\n".join(lines)


def run(args) -> dict:
    """Measure one variant (``args.variant``): matmul, inference, training, matmul — each in a subprocess."""
    import torch

    env = environment(cpu_capability=torch.backends.cpu.get_cpu_capability(), threads=args.threads)
    print(f"[{args.variant}] running phases in subprocesses ({args.threads} threads, load {env['loadavg_start']})",
          file=sys.stderr)
    mm0 = run_child("matmul", args)
    infer = run_child("infer", args)
    train = run_child("train", args)
    mm1 = run_child("matmul", args)
    env["loadavg_end"] = loadavg()

    mm_times = mm0["all_s"] + mm1["all_s"]
    mm = {"size": args.mm_size, "dtype": mm0["dtype"], "flops_per_mm": mm0["flops_per_mm"], **stats(mm_times)}
    mm["flops_per_s"] = mm["flops_per_mm"] / mm["median_s"]
    flops = count_flops(args.batch, train["padded_text_len"], train["n_prefix"], train["scored_positions"],
                        len(train["injection_layers"]))
    achieved = {"train": flops["train_step"] / train["time"]["median_s"],
                "infer": flops["inference_forward"] / infer["time"]["median_s"]}
    return {
        "benchmark": "epalm_step", "variant": args.variant, "fast_paths": VARIANTS[args.variant],
        "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "env": env, "train": train, "infer": infer, "matmul": mm, "matmul_runs": [mm0, mm1],
        "flops": flops, "achieved": achieved,
        "ratio": {k: v / mm["flops_per_s"] for k, v in achieved.items()},
        "memory": {"train_peak_mib": train["hwm_phase_mib"], "infer_peak_mib": infer["hwm_phase_mib"],
                   "train_peak_delta_mib": train["peak_delta_mib"], "infer_peak_delta_mib": infer["peak_delta_mib"],
                   "train_over_infer_peak": train["hwm_phase_mib"] / infer["hwm_phase_mib"]},
    }


def compare(results: dict[str, dict]) -> str:
    """One line per variant: step times, achieved / dense-matmul FLOP/s (same dtype), peaks."""
    head = (f"{'variant':<15}{'train s':>9}{'infer s':>9}{'GFLOP/s':>9}{'/ dense':>9}{'dense':>10}"
            f"{'train MiB':>11}{'infer MiB':>11}{'train/inf':>10}{'loss':>9}")
    lines = ["eP-ALM step, OPT-125m + ViT-B/16 — fast paths side by side (dense = torch.mm of the variant's dtype)",
             head]
    for name, r in results.items():
        lines.append(f"{name:<15}{r['train']['time']['median_s']:>9.3f}{r['infer']['time']['median_s']:>9.3f}"
                     f"{r['achieved']['train'] / 1e9:>9.1f}{r['ratio']['train']:>9.2f}{r['matmul']['dtype']:>10}"
                     f"{r['memory']['train_peak_mib']:>11.0f}{r['memory']['infer_peak_mib']:>11.0f}"
                     f"{r['memory']['train_over_infer_peak']:>10.2f}{r['train']['loss']:>9.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per phase (after warm-up)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mm-size", type=int, default=2048)
    ap.add_argument("--mm-repeats", type=int, default=10)
    ap.add_argument("--variants", default="fp32",
                    help=f"comma-separated fast-path variants to measure side by side: {', '.join(VARIANTS)}")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--phase", choices=["matmul", "train", "infer"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=list(VARIANTS), default="fp32", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.threads <= 0:
        import torch

        args.threads = torch.get_num_threads()

    if args.phase is not None:  # child process
        out = phase_matmul(args) if args.phase == "matmul" else phase_model(args, train=args.phase == "train")
        print(json.dumps(out))
        return

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        ap.error(f"--variants: unknown {unknown}; choose from {list(VARIANTS)}")
    results = {}
    for variant in variants:
        args.variant = variant
        results[variant] = run(args)
    print(report(results[variants[0]]))
    if len(results) > 1:
        print()
        print(compare(results))
    write_json(results[variants[0]] if len(results) == 1 else {"benchmark": "epalm_step", "variants": results},
               args.json)


if __name__ == "__main__":
    main()
