"""Batched KV-cache generation vs one sample at a time, on the same questions, CPU.

    python benchmarks/generation.py [--n 128] [--batch 32 [64 ...]] [--max-new-tokens 10] [--beams 3]
                                    [--beam-n 32] [--repeats 5] [--threads N] [--rows demo opt125m]
                                    [--train-steps 200] [--adapter DIR] [--json out.json]

Two models (one row each, each row in its own fresh subprocess):

- ``demo``: the eP-ALM demo recipe the library ships (``adapters/epalm/demo.yaml``: the zoo's pretrained
  ``zoo:tiny-opt`` + ``zoo:tiny-vit``, shared connector, 10-token prompt) on the first ``--n`` questions of
  its held-out synthetic-scenes VQA set (``$MMADAPT_HOME/data/scenes``, split ``val``; captioning off). The
  adapter is first trained ``--train-steps`` steps (VQA only, the recipe's batch and LR) so that the answers
  have the length of a trained model's (one word + EOS; an untrained adapter rambles to ``max_new_tokens``),
  or loaded from ``--adapter`` (a ``save_pretrained`` directory); ``--train-steps 0`` keeps it untrained.
- ``opt125m``: the real-size random OPT-125m + ViT-B/16 eP-ALM of ``benchmarks/epalm_step.py``
  (``build_model``), on ``--n`` synthetic prompts (``make_batch``: 224-px random images, VQA-style questions
  of 16–18 words). A random LM rarely emits EOS: every sample decodes ``--max-new-tokens`` tokens.

Modes, timed on the same questions in the same process, one after the other:

- ``one-at-a-time``: ``model.generate`` on batch 1, in a loop over the ``--n`` samples (greedy);
- ``batched + KV cache``: ``model.generate`` on chunks of ``--batch`` (greedy; what the eval loop runs; with
  several ``--batch`` values, once per value; the modes below use the first);
- ``batched, no cache`` (REFERENCE ONLY, written here, not library code): the same greedy decoding on
  chunks of ``--batch`` that re-runs the whole prefill ``[adapter prefix][prompt][answer so far]`` for every
  new token, through the model's own input builder and hooks (:func:`generate_no_cache`);
- with ``--beams K`` (> 1): beam search, one at a time vs batched (``model.generate(num_beams=K)``), on the
  first ``--beam-n`` questions.

Reported per mode: wall time, samples/s, generated tokens/s (tokens up to and including EOS, or
``max_new_tokens``, counted from the ids each mode decodes), the time spent in the perception (frozen
encoder + connector: ``model.perceive`` is wrapped with a clock) and the rest ("LM": prefill, decoding
steps, Python), the speed-up over one-at-a-time end to end and for the LM part alone, and the number of
samples whose answer differs from the one-at-a-time answer (greedy: must be 0). A warm-up of two samples
per mode runs first. The demo row's modes take a second or two each: each is timed ``--repeats`` times,
round robin, and the run of median wall time is reported; the opt125m row's modes (minutes each) run once.
The CPU is shared: read the load averages printed beside the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import environment, loadavg, mib, proc_status, run_json_child, write_json  # noqa: E402

ROWS = ("demo", "opt125m")
DEMO_RECIPE = ROOT / "adapters" / "epalm" / "demo.yaml"


# ------------------------------------------------------------------------------------ reference path
def generate_no_cache(model, pixel_values, prefix: list[str], max_new_tokens: int = 20) -> list[str]:
    """REFERENCE ONLY — greedy decoding *without* a KV cache: every new token re-runs the full prefill of
    ``[adapter prefix][prompt][tokens generated so far]`` (built by ``PerceptualLM.prefill_inputs``, run with
    the adapter's prefill hooks, as ``PerceptualLM.forward`` does). Same stopping rule as
    ``PerceptualLM.generate``: a finished sample keeps receiving EOS until every sample is done."""
    import torch
    import torch.nn.functional as F

    from mmadapt.models.perceptual_lm import TextBatch

    with torch.no_grad():
        eos = model.lm.tokenizer.eos_token_id
        tokens = model.perceive(pixel_values.to(model.device))
        text = model.tokenize(prefix)
        ids, mask = text.ids.to(model.device), text.mask.to(model.device)
        B = ids.shape[0]
        out = torch.full((B, 0), eos, dtype=torch.long, device=model.device)
        done = torch.zeros(B, dtype=torch.bool, device=model.device)
        for _ in range(max_new_tokens):
            embeds, mask4d, positions, _ = model.prefill_inputs(TextBatch(ids, mask, torch.zeros_like(mask)), tokens)
            hidden = model.run_lm(embeds, mask4d, positions, tokens, prefill=True).last_hidden_state
            nxt = F.log_softmax(model.lm.logits(hidden[:, -1]).float(), dim=-1).argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, eos), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        return [model.decode(row) for row in out]


# ------------------------------------------------------------------------------------ instrumentation
class Probe:
    """Wraps, on the instance, ``model.perceive`` and ``model.run_lm`` (clocks: the encoder, the LM's KV-cache
    decoding steps, its ``prefill=False`` runs) and ``model.decode`` (generated-token count)."""

    def __init__(self, model, max_new_tokens: int):
        self.model = model
        self.max_new = max_new_tokens
        self.eos = model.lm.tokenizer.eos_token_id
        self.perception_s = 0.0
        self.step_s = 0.0
        self.tokens = 0
        perception, decode, run_lm = model.perceive, model.decode, model.run_lm

        def timed_perception(pixel_values):
            t0 = time.perf_counter()
            out = perception(pixel_values)
            self.perception_s += time.perf_counter() - t0
            return out

        def timed_run_lm(*a, prefill: bool, **k):
            t0 = time.perf_counter()
            out = run_lm(*a, prefill=prefill, **k)
            if not prefill:
                self.step_s += time.perf_counter() - t0
            return out

        def counted_decode(ids):
            seq = ids.tolist()
            if self.eos in seq:  # greedy rows: the tokens up to and including the first EOS
                self.tokens += seq.index(self.eos) + 1
            else:  # greedy rows that hit the limit, and beam hypotheses (stored without their EOS)
                self.tokens += len(seq) + (len(seq) < self.max_new)
            return decode(ids)

        model.perceive = timed_perception
        model.decode = counted_decode
        model.run_lm = timed_run_lm

    def reset(self) -> None:
        self.perception_s, self.step_s, self.tokens = 0.0, 0.0, 0


def time_mode(probe: Probe, fn, pixels, prefixes: list[str], chunk: int) -> dict:
    """Run ``fn(pixels, prefixes)`` over chunks of ``chunk`` samples; wall time, perception time, tokens."""
    probe.reset()
    answers: list[str] = []
    t0 = time.perf_counter()
    for i in range(0, len(prefixes), chunk):
        answers += fn(pixels[i:i + chunk], prefixes[i:i + chunk])
    wall = time.perf_counter() - t0
    n = len(prefixes)
    return {"wall_s": wall, "perception_s": probe.perception_s, "lm_s": wall - probe.perception_s,
            "decode_steps_s": probe.step_s,
            "tokens": probe.tokens, "samples_per_s": n / wall, "tokens_per_s": probe.tokens / wall,
            "chunk": chunk, "answers": answers}


# ------------------------------------------------------------------------------------------- models
def build_demo(args) -> tuple:
    """The demo recipe's model (adapter trained ``--train-steps`` steps or loaded) and its first ``--n``
    held-out questions: (model, pixels [n, 3, H, W], prompts, reference answers, info)."""
    import torch

    import mmadapt
    from mmadapt.zoo.cache import cache_root

    data = args.data or cache_root() / "data" / "scenes"
    overrides = ["tasks.caption=null", "train.seed=0", *[f"tasks.vqa.{s}.root={data}" for s in ("train", "eval")]]
    info: dict = {"recipe": str(DEMO_RECIPE.relative_to(ROOT)), "data": str(data)}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = mmadapt.load_recipe(DEMO_RECIPE, [*overrides, f"train.max_steps={max(args.train_steps, 1)}",
                                                f"output_dir={tmp}", "train.save_every=0",
                                                "train.keep_checkpoints=1"])
        tasks = mmadapt.build_tasks(cfg)
        model = mmadapt.build_model(cfg, tasks)
        if args.adapter is not None:
            model.load_adapter(args.adapter)
            info["adapter"] = str(args.adapter)
        elif args.train_steps > 0:
            t0 = time.perf_counter()
            result = mmadapt.train(cfg, model=model, quiet=True)
            model = result.model
            info["adapter"] = f"trained here: {args.train_steps} steps of {cfg.train.batch_size} (VQA only)"
            info["train_s"] = round(time.perf_counter() - t0, 1)
            info["final_loss"] = round(result.records[-1]["loss"], 4)
        else:
            info["adapter"] = "untrained (fresh init)"
    model.eval()
    task = tasks["vqa"]
    held_out = task.split("eval").samples
    if args.n > len(held_out):
        raise SystemExit(f"--n {args.n}: the demo eval set has {len(held_out)} questions")
    samples = held_out[:args.n]
    pixels = model.vision.preprocess([model.vision.load(s.image_path) for s in samples])
    prompts = [task.prefix(s.question) for s in samples]
    refs = [s.multiple_choice_answer or "" for s in samples]
    info.update(lm=cfg.model.lm.name, vision=cfg.model.vision.name, eval_questions=len(held_out),
                image_shape=list(pixels.shape[1:]), total_params=sum(p.numel() for p in model.parameters()),
                trainable_params=sum(p.numel() for p in model.trainable_parameters()))
    torch.manual_seed(0)
    return model, pixels, prompts, refs, info


def build_opt125m(args) -> tuple:
    from epalm_step import build_model, make_batch

    model = build_model(args.seed).eval()
    pixels, prompts, refs = make_batch(args.n, args.seed)
    info = {"lm": "OPT-125m config, random init", "vision": "ViT-B/16 config, random init",
            "image_shape": list(pixels.shape[1:]), "total_params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.trainable_parameters())}
    return model, pixels, prompts, refs, info


# -------------------------------------------------------------------------------------------- a row
def run_row(args) -> dict:
    """Child process: build one row's model and time every mode on the same questions."""
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, pixels, prompts, refs, info = (build_demo if args.row == "demo" else build_opt125m)(args)
    info["build_s"] = round(time.perf_counter() - t0, 1)
    text = model.tokenize(prompts)
    info["prompt_tokens"] = {"min": int(text.mask.sum(1).min()), "max": int(text.mask.sum(1).max())}
    info["n_prefix"] = int(model.adapter.n_prefix)
    probe = Probe(model, args.max_new_tokens)
    mx = args.max_new_tokens

    def greedy(p, q):
        return model.generate(p, q, max_new_tokens=mx)

    def no_cache(p, q):
        return generate_no_cache(model, p, q, max_new_tokens=mx)

    def beams(p, q):
        return model.generate(p, q, max_new_tokens=mx, num_beams=args.beams)

    main_batch = args.batch[0]
    n, nb = len(prompts), min(args.beam_n or len(prompts), len(prompts))
    modes = [("one-at-a-time", greedy, 1, n), ("batched + KV cache", greedy, main_batch, n)]
    modes += [(f"batched + KV cache, batch {b}", greedy, b, n) for b in args.batch[1:]]
    modes += [("batched, no cache (reference)", no_cache, main_batch, n)]
    if args.beams > 1:
        modes += [(f"beams {args.beams}, one-at-a-time", beams, 1, nb),
                  (f"beams {args.beams}, batched", beams, main_batch, nb)]
    for _, fn, chunk, _ in modes:  # warm-up: allocator, one-time lazy set-up
        time_mode(probe, fn, pixels[:2], prompts[:2], min(chunk, 2))
    repeats = max(1, args.repeats if args.row == "demo" else 1)
    runs: dict[str, list[dict]] = {name: [] for name, *_ in modes}
    load = [loadavg()]
    for _ in range(repeats):  # round robin, so that a burst of load on the shared CPU hits every mode alike
        for name, fn, chunk, k in modes:
            runs[name].append(time_mode(probe, fn, pixels[:k], prompts[:k], chunk))
            load.append(loadavg())
            print(f"  [{args.row}] {name}: {runs[name][-1]['wall_s']:.2f} s", file=sys.stderr, flush=True)
    results = {}
    for name, *_, k in modes:  # the run of median wall time stands for the mode
        ordered = sorted(runs[name], key=lambda r: r["wall_s"])
        results[name] = {**ordered[(len(ordered) - 1) // 2], "n": k, "repeats": len(ordered),
                         "wall_all_s": [r["wall_s"] for r in runs[name]],
                         "repeat_mismatches": sum(a != b for r in ordered
                                                  for a, b in zip(r["answers"], ordered[0]["answers"]))}
    greedy_ref = results["one-at-a-time"]
    for name, r in results.items():
        base = results[f"beams {args.beams}, one-at-a-time"] if name.startswith("beams") else greedy_ref
        r["speedup"] = base["wall_s"] / r["wall_s"]
        r["speedup_lm"] = base["lm_s"] / r["lm_s"]
        r["mismatches"] = sum(a != b for a, b in zip(r["answers"], base["answers"]))
        r["exact_match_vs_reference_answer"] = sum(a == b for a, b in zip(r["answers"], refs)) / len(r["answers"])
    info["examples"] = [{"prompt": p, "answer": a} for p, a in zip(prompts[:3], greedy_ref["answers"][:3])]
    for r in results.values():
        del r["answers"]
    info["rss_mib"] = mib(proc_status()["VmRSS"])
    return {"row": args.row, "info": info, "modes": results, "loadavg": load}


def run_child(row: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--row", row, "--n", str(args.n),
           "--batch", *map(str, args.batch),
           "--max-new-tokens", str(args.max_new_tokens), "--beams", str(args.beams), "--beam-n", str(args.beam_n),
           "--repeats", str(args.repeats), "--threads", str(args.threads),
           "--seed", str(args.seed), "--train-steps", str(args.train_steps)]
    if args.adapter is not None:
        cmd += ["--adapter", str(args.adapter)]
    if args.data is not None:
        cmd += ["--data", str(args.data)]
    return run_json_child(cmd, f"row {row!r}", stream_stderr=True)


# ------------------------------------------------------------------------------------------- report
def report(res: dict) -> str:
    lines = []
    add = lines.append
    env = res["env"]
    add("Generation throughput — batched KV cache vs one sample at a time (CPU, fp32)")
    add(f"  torch {env['torch']}, transformers {env['transformers']}, {env['cpu']}, {env['threads']} threads, "
        f"n {res['n']}, batch {' / '.join(map(str, res['batch']))}, max_new_tokens {res['max_new_tokens']}")
    for row in res["rows"]:
        info = row["info"]
        add("")
        add(f"[{row['row']}] {info['lm']} + {info['vision']}, {info['total_params']:,} parameters; adapter "
            f"{info.get('adapter', 'random init (speed does not depend on the weights)')}")
        add(f"  prompt tokens {info['prompt_tokens']['min']}–{info['prompt_tokens']['max']} + {info['n_prefix']} "
            f"adapter columns; image {info['image_shape']}; loadavg {row['loadavg'][0]} → {row['loadavg'][-1]}")
        add(f"  e.g. {info['examples'][0]['prompt'][:70]!r} → {info['examples'][0]['answer'][:60]!r}")
        w = 32
        add(f"  {'mode':<{w}}{'n':>5}{'batch':>6}{'wall s':>8}{'enc s':>7}{'LM s':>8}{'steps':>7}{'samples/s':>10}"
            f"{'tok/s':>8}{'×':>7}{'× LM':>7}{'diff':>6}")
        for name, r in row["modes"].items():
            add(f"  {name:<{w}}{r['n']:>5d}{r['chunk']:>6d}{r['wall_s']:>8.2f}{r['perception_s']:>7.2f}"
                f"{r['lm_s']:>8.2f}{r['decode_steps_s']:>7.2f}{r['samples_per_s']:>10.2f}{r['tokens_per_s']:>8.1f}"
                f"{r['speedup']:>7.2f}{r['speedup_lm']:>7.2f}{r['mismatches']:>6d}")
        reps = next(iter(row["modes"].values())).get("repeats", 1)
        if reps > 1:
            add(f"  median of {reps} runs per mode (round robin); wall s min–max: " + ", ".join(
                f"{name.split(',')[0] if name.startswith('beams') else name} {min(r['wall_all_s']):.2f}–"
                f"{max(r['wall_all_s']):.2f}" for name, r in list(row["modes"].items())[:2]))
        add(f"  (enc = perception encoder + connector; LM = the rest: tokenising, prefill, decoding; steps = the KV-cache "
            f"decoding steps within LM; × = speed-up over one-at-a-time, end to end; × LM = of the LM part; "
            f"diff = answers differing from one-at-a-time; exact match vs reference answers "
            f"{100 * row['modes']['one-at-a-time']['exact_match_vs_reference_answer']:.1f}%)")
    add("")
    for row in res["rows"]:
        key = row["name"]
        one, s = row["modes"]["one-at-a-time"], row["modes"]["batched + KV cache"]
        bound = one["wall_s"] / s["perception_s"]
        add(f"target ≥ 5×  [{key}] batched + KV cache (batch {s['chunk']}) vs one-at-a-time: end to end "
            f"{s['speedup']:.2f}× ({'met' if s['speedup'] >= 5 else 'NOT met'}; at most {bound:.2f}× with the "
            f"batched encoder's time alone), generation without the encoder {s['speedup_lm']:.2f}× "
            f"({'met' if s['speedup_lm'] >= 5 else 'NOT met'}); answers differing: "
            f"{sum(r['mismatches'] for r in row['modes'].values())}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=128, help="questions per row")
    ap.add_argument("--batch", type=int, nargs="+", default=[32],
                    help="batch of the batched modes (more than one: batched + KV cache at each; the others at the first)")
    ap.add_argument("--max-new-tokens", type=int, default=10)
    ap.add_argument("--beams", type=int, default=3, help="also time beam search with this many beams (≤ 1: skip)")
    ap.add_argument("--repeats", type=int, default=5,
                    help="demo row: time every mode this many times, round robin, and keep the median (opt125m: once)")
    ap.add_argument("--beam-n", type=int, default=32, help="beam search on the first this many questions (0: all)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--rows", nargs="*", choices=ROWS, default=list(ROWS))
    ap.add_argument("--train-steps", type=int, default=200,
                    help="demo row: train its adapter this many steps first (0: untrained)")
    ap.add_argument("--adapter", type=Path, default=None, help="demo row: load this trained adapter instead")
    ap.add_argument("--data", type=Path, default=None, help="scenes root (default: $MMADAPT_HOME/data/scenes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--quick", action="store_true",
                    help="smoke-test sizes: --n 8 --batch 4 --max-new-tokens 4 --beam-n 4 --repeats 1 --train-steps 20")
    ap.add_argument("--row", choices=ROWS, default=None, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.batch, args.max_new_tokens, args.beam_n, args.repeats = 8, [4], 4, 4, 1
        args.train_steps = min(args.train_steps, 20)
    return args


def run(args: argparse.Namespace) -> dict:
    """Time every row (each in a fresh subprocess), print the table, return the results."""
    import torch

    if args.threads <= 0:
        args.threads = torch.get_num_threads()
    env = environment(threads=args.threads)
    t0 = time.perf_counter()
    rows = []
    for name in args.rows:
        row = run_child(name, args)
        main_mode = row["modes"]["batched + KV cache"]
        # headline figures of the row (what `python -m benchmarks` checks): batched + KV cache at the first
        # --batch vs one at a time, end to end and without the encoder; answers differing, all modes together
        row.update(name=name, speedup=main_mode["speedup"], speedup_lm=main_mode["speedup_lm"],
                   mismatches=sum(m["mismatches"] for m in row["modes"].values()))
        rows.append(row)
    env["loadavg_end"] = loadavg()
    res = {"benchmark": "generation", "n": args.n, "batch": args.batch, "max_new_tokens": args.max_new_tokens,
           "beams": args.beams, "train_steps": args.train_steps, "env": env, "rows": rows,
           "wall_s": round(time.perf_counter() - t0, 1),
           "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(report(res))
    write_json(res, args.json)
    return res


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.row is not None:
        if args.threads <= 0:
            import torch

            args.threads = torch.get_num_threads()
        print(json.dumps(run_row(args), default=str))
        return
    run(args)


if __name__ == "__main__":
    main()
