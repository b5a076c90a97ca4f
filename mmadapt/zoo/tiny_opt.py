"""``zoo:tiny-opt``: a small OPT causal LM and its tokenizer, both trained here on synthetic text.

The LM is pretrained to *read facts from its context*: each training text states facts and then asks about
them, in exactly the formats the library uses later::

    vqa      "{facts} question: {q1} answer: {a1} question: {q2} answer: {a2} ...</s>"
    caption  "{facts} caption: {caption}</s>"
    kv       "ka is 7 . mo is red . question: what is mo? answer: red question: ...</s>"  (or "what is mo ?")
    copy     "{random words} . repeat : {the same words}</s>"
    motion   "the disc moves up . question: which way does the shape move? answer: up question: ...</s>"
    sound    "the sound is a rising chirp . caption: a tone rises in pitch</s>"

where ``facts = scene_facts(scene, rng)`` (see :mod:`mmadapt.data.synthetic.scene_world`); the motion and sound
texts tell the synthetic clips of the video QA and audio captioning sets in words
(:mod:`mmadapt.data.synthetic.media_text`), so the LM knows their vocabulary as a pretrained LM would. The key–value
texts use random names and values, so the model learns to look things up in context in general, not just to memorise
the scene vocabulary; the copy texts give a dense signal to the look-back-and-copy (induction) heads that such
reading is built on. Up to ``max_questions`` questions share one context, and the loss weighs answers 1 and prompts
``prompt_loss_weight``: every answer is a reading signal, while the random facts are noise.

What it took to make a model this small read its context within a few CPU minutes (measured here; each
change alone was not enough): the sinusoid start of the learned position table (see
:func:`sinusoidal_positions`), the answer-weighted loss with several questions per context, the copy texts,
and a narrower, shallower model trained for more steps (bf16 autocast where the CPU computes bf16 natively).
Held-out teacher-forced answer accuracy per question family is recorded in the manifest. The texts
themselves are written in :mod:`mmadapt.zoo.tiny_opt_text`.

The tokenizer (HF ``tokenizers`` BPE, lowercase, SentencePiece-style ``▁`` word boundaries with punctuation
split off, so that ``decode(encode(x)) == x``; trained deterministically) follows the OPT convention:
``</s>`` is both BOS and EOS and is prepended to every encoded sequence; ``<pad>`` has its own id.
"""

from __future__ import annotations

import random
import string
import time
from pathlib import Path

import torch

from mmadapt.data.synthetic import scene_world as S
from mmadapt.zoo.pretrain import autocast, pretrain
from mmadapt.zoo.tiny_opt_text import (
    EOS,
    PAD,
    SPECIAL_TOKENS,
    UNK,
    filler_text,
    kv_text,
    motion_pairs,
    sequence_text,
    sound_text,
    task_example,
    vqa_text,
)

CODE_VERSION = 3

DEFAULT_SPEC: dict = {
    "name": "zoo:tiny-opt",
    "code_version": CODE_VERSION,
    "seed": 0,
    "threads": 2,
    "tokenizer": {"vocab_size": 1024, "n_task_texts": 12000, "n_filler_texts": 12000},
    "model": {
        "hidden_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 4,
        "ffn_dim": 512,
        "max_position_embeddings": 256,
        "position_init": "sinusoidal",  # start the learned position table from sinusoids (see below)
    },
    "train": {
        "steps": 3300,
        "batch_size": 32,
        "lr": 1e-3,
        "warmup_steps": 100,
        "min_lr_ratio": 0.05,
        "weight_decay": 0.01,
        "grad_clip": 1.0,
        "bf16_autocast": "auto",  # bf16 only where the CPU has it natively (pretrain.py)
        "prompt_loss_weight": 0.1,
        "max_questions": 5,
        "mix": {"vqa": 0.42, "caption": 0.1, "motion": 0.08, "sound": 0.05, "kv": 0.17, "copy": 0.18},
    },
    "eval": {"n_vqa": 1000, "n_kv": 400, "n_motion": 200, "n_sound": 100, "batch_size": 100},
}

#: Overrides that make a build take a few seconds (for tests); the model is then untrained.
QUICK_OVERRIDES: dict = {
    "tokenizer": {"n_task_texts": 2000, "n_filler_texts": 2000},
    "model": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "ffn_dim": 128},
    "train": {"steps": 5, "batch_size": 8, "warmup_steps": 1},
    "eval": {"n_vqa": 20, "n_kv": 10, "n_motion": 10, "n_sound": 10, "batch_size": 10},
}


# ------------------------------------------------------------------------------------------ tokenizer


def train_tokenizer(texts: list[str], vocab_size: int, model_max_length: int):
    """A BPE tokenizer trained on ``texts``, wrapped as a transformers ``PreTrainedTokenizerFast``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    # SentencePiece-style word boundaries: "▁" marks a space, so decode(encode(x)) == x (lowercased), and
    # an answer tokenises the same alone (" red") as after its prompt. No "##" continuing-subword prefix:
    # the BPE trainer creates those tokens in hash-map order, which made merges (and the model) differ
    # from run to run; with plain characters every id and every tie-break is deterministic.
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True),
        pre_tokenizers.Punctuation(behavior="isolated"),
    ])
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=list(string.ascii_lowercase + string.digits + string.punctuation + "\u2581"),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    eos_id = tok.token_to_id(EOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", pair=f"{EOS} $A {EOS} $B:1", special_tokens=[(EOS, eos_id)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=UNK, pad_token=PAD,
        model_max_length=model_max_length, padding_side="right", clean_up_tokenization_spaces=False,
    )


# ------------------------------------------------------------------------------------------ training


def _encode_examples(tokenizer, examples: list[tuple[str, list[tuple[str, str]]]], prompt_weight: float
                     ) -> list[tuple[list[int], list[float]]]:
    """``(ids, loss weights)`` of ``</s> prompt₁ answer₁ … </s>``: weight 1 on answers and the final EOS,
    ``prompt_weight`` on prompts (their facts are random: full weight there drowns the reading signal).
    Pieces are tokenised apart; the ``▁`` word boundaries make that equal to tokenising the joined text."""
    pieces = [text for _, pairs in examples for pair in pairs for text in pair]
    encoded = iter(tokenizer(pieces, add_special_tokens=False)["input_ids"])  # one batched call
    out = []
    for _, pairs in examples:
        ids, weights = [tokenizer.eos_token_id], [0.0]
        for _ in pairs:
            p, a = next(encoded), next(encoded)
            ids += p + a
            weights += [prompt_weight] * len(p) + [1.0] * len(a)
        out.append((ids + [tokenizer.eos_token_id], weights + [1.0]))
    return out


def _pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def _weighted_lm_loss(logits: torch.Tensor, ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy, token ``t`` weighted by ``weights[:, t]`` (0 on padding)."""
    ce = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(),
                                           reduction="none")
    w = weights[:, 1:].flatten()
    return (ce * w).sum() / w.sum()


def sinusoidal_positions(n: int, dim: int) -> torch.Tensor:
    """The Transformer's sinusoidal table ``[n, dim]`` (rms 1/√2).

    OPT's learned position table starts as std-0.02 noise; from that start the tiny LM did not learn to
    look facts up in its context within its short pretraining (held-out colour questions at chance):
    previous-token and induction heads need position to be readable early. Starting the same learned
    table from sinusoids, scaled to the token embeddings' size, fixes that; the table still trains."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    omega = 1.0 / 10000 ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    table = torch.zeros(n, dim, dtype=torch.float64)
    table[:, 0::2], table[:, 1::2] = (pos * omega).sin(), (pos * omega).cos()
    return table.float()


@torch.no_grad()
def answer_accuracy(model, tokenizer, examples: list[tuple[str, str, str]], batch_size: int = 100) -> dict:
    """Teacher-forced answer accuracy: every answer token is the argmax given the prompt (and the answer
    tokens before it). Returns overall accuracy and accuracy per kind / VQA question family."""
    model.eval()
    hits: dict[str, list[int]] = {}
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        prompts = tokenizer([p for _, p, _ in chunk], add_special_tokens=True)["input_ids"]
        answers = tokenizer([a for _, _, a in chunk], add_special_tokens=False)["input_ids"]
        ids, mask = _pad_batch([p + a for p, a in zip(prompts, answers)], tokenizer.pad_token_id)
        pred = model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
        for (kind, prompt, _), p, a, row in zip(chunk, prompts, answers, pred):
            got = row[len(p) - 1 : len(p) - 1 + len(a)].tolist()
            ok = int(got == a)
            hits.setdefault("all", []).append(ok)
            hits.setdefault(kind, []).append(ok)
            if kind == "vqa":
                family = prompt.split(" question: ")[1].split()[:2]
                hits.setdefault("vqa/" + "_".join(family), []).append(ok)
    return {k: round(sum(v) / len(v), 4) for k, v in sorted(hits.items())}


def _eval_examples(rng: random.Random, n_vqa: int, n_kv: int, n_motion: int = 0, n_sound: int = 0
                   ) -> list[tuple[str, str, str]]:
    out = []
    while len(out) < n_vqa:  # every question family of each held-out scene
        scene = S.sample_scene(rng)
        for q in S.questions_for_scene(scene, rng):
            out.append(("vqa", *vqa_text(scene, q, S.scene_facts(scene, rng))))
    out = out[:n_vqa]
    out += [("kv", *kv_text(rng)) for _ in range(n_kv)]
    out += [("motion", *motion_pairs(rng)[0]) for _ in range(n_motion)]
    out += [("sound", *sound_text(rng)) for _ in range(n_sound)]
    return out


def build(out_dir: Path, spec: dict, progress: bool = True) -> dict:
    """Train the tokenizer and the LM of ``spec`` and save both to ``out_dir``; return build metrics."""
    from transformers import OPTConfig, OPTForCausalLM

    t0 = time.perf_counter()
    seed, tr = int(spec["seed"]), spec["train"]
    # Tokenizer: the task texts of the LM corpus plus English-like filler.
    rng = random.Random(f"{seed}/tokenizer")
    n_task, n_fill = spec["tokenizer"]["n_task_texts"], spec["tokenizer"]["n_filler_texts"]
    texts = [sequence_text(task_example(rng, tr["mix"], tr["max_questions"])[1]) for _ in range(n_task)]
    texts += [filler_text(rng) for _ in range(n_fill)]
    texts += sorted(S.answer_vocabulary())  # each answer word on its own, too
    mcfg = spec["model"]
    tokenizer = train_tokenizer(texts, spec["tokenizer"]["vocab_size"], mcfg["max_position_embeddings"])
    t_tok = time.perf_counter() - t0

    config = OPTConfig(
        vocab_size=len(tokenizer), hidden_size=mcfg["hidden_size"],
        num_hidden_layers=mcfg["num_hidden_layers"], num_attention_heads=mcfg["num_attention_heads"],
        ffn_dim=mcfg["ffn_dim"], max_position_embeddings=mcfg["max_position_embeddings"],
        word_embed_proj_dim=mcfg["hidden_size"], do_layer_norm_before=True, activation_function="relu",
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, layerdrop=0.0,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = OPTForCausalLM(config)
    if mcfg["position_init"] == "sinusoidal":
        table = model.model.decoder.embed_positions.weight
        with torch.no_grad():
            table.copy_(sinusoidal_positions(*table.shape) * table.std() / 0.7071)
    n_params = sum(p.numel() for p in model.parameters())

    steps, bs = int(tr["steps"]), int(tr["batch_size"])
    rng = random.Random(f"{seed}/lm-train")
    examples = [task_example(rng, tr["mix"], tr["max_questions"]) for _ in range(steps * bs)]
    encoded = _encode_examples(tokenizer, examples, float(tr["prompt_loss_weight"]))
    model.train()

    def step_loss(step: int) -> torch.Tensor:
        chunk = encoded[step * bs : (step + 1) * bs]
        ids, mask = _pad_batch([i for i, _ in chunk], tokenizer.pad_token_id)
        weights = torch.zeros(ids.shape)
        for row, (_, w) in enumerate(chunk):
            weights[row, : len(w)] = torch.tensor(w)
        with autocast(tr):
            logits = model(input_ids=ids, attention_mask=mask).logits
        return _weighted_lm_loss(logits, ids, weights)

    ema, t_train = pretrain(model.named_parameters(), lambda n, p: p.dim() < 2 or "embed_positions" in n,
                            step_loss, tr, betas=(0.9, 0.98), desc="zoo:tiny-opt pretrain", progress=progress)
    model.eval()

    ev = spec["eval"]
    held_out = _eval_examples(random.Random(f"{seed}/lm-eval"), ev["n_vqa"], ev["n_kv"],
                              ev.get("n_motion", 0), ev.get("n_sound", 0))
    acc = answer_accuracy(model, tokenizer, held_out, ev["batch_size"])

    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return {
        "n_params": n_params,
        "final_train_loss_ema": round(float(ema), 4) if ema is not None else None,
        "answer_accuracy": acc.get("vqa"),
        "kv_accuracy": acc.get("kv"),
        "accuracy": acc,
        "tokenizer_vocab_size": len(tokenizer),
        "tokenizer_seconds": round(t_tok, 2),
        "train_seconds": round(t_train, 2),
        "seconds": round(time.perf_counter() - t0, 2),
    }
