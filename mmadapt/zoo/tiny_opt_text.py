"""The pretraining texts of ``zoo:tiny-opt`` (:mod:`mmadapt.zoo.tiny_opt`): each states facts and then asks
about them, in the formats the library uses later (VQA, captions, key–value look-ups, copying, the synthetic
clips' motion and sound told in words), plus filler sentences over a small English-like vocabulary for the
tokenizer. Every text is a pure function of its ``random.Random``."""

from __future__ import annotations

import random
import string

from mmadapt.data.synthetic import media_text as M
from mmadapt.data.synthetic import scene_world as S
from mmadapt.data.synthetic.audio import CLASSES as SOUND_CLASSES
from mmadapt.data.synthetic.video import CLASSES as MOTION_CLASSES
from mmadapt.data.synthetic.video import SHAPES as MOTION_SHAPES
from mmadapt.errors import ConfigError

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # the tokenizer's ids 0, 1, 2
PAD, EOS, UNK = SPECIAL_TOKENS


def vqa_text(scene: S.Scene, q: S.Question, facts: str) -> tuple[str, str]:
    """(prompt, answer) of the VQA format; the training text is ``prompt + " " + answer + "</s>"``."""
    return f"{facts} question: {q.question} answer:", q.answer


def caption_text(facts: str, caption: str) -> tuple[str, str]:
    return f"{facts} caption:", caption


_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "po", "si", "de", "vu", "bo", "fi", "ga", "ze", "xo", "jum",
              "pel", "tor", "wix", "quo", "dan", "hel", "yor", "bri", "sta", "gle", "mon", "cra")

_NOUNS = ("cat", "dog", "house", "river", "tree", "book", "car", "city", "garden", "teacher", "child", "window",
          "road", "table", "door", "mountain", "friend", "letter", "ship", "market", "bird", "song", "story",
          "morning", "winter", "summer", "king", "farmer", "horse", "village", "lamp", "cup", "box", "ball",
          "paper", "student", "doctor", "train", "bridge", "field", "flower", "stone", "apple", "bread", "coat",
          "hat", "shoe", "clock", "phone", "picture", "shadow", "wall", "floor", "kitchen", "forest", "island",
          "sea", "cloud", "star", "moon", "sun", "night", "day", "year", "week", "hour", "water", "fire", "wind",
          "music", "game", "team", "group", "family", "name", "word", "number", "color", "shape", "object",
          "question", "answer", "image", "photo", "scene", "side", "corner", "center", "edge", "top", "bottom")
_VERBS = ("sees", "finds", "takes", "makes", "likes", "wants", "opens", "closes", "builds", "paints", "reads",
          "writes", "carries", "moves", "holds", "watches", "follows", "helps", "calls", "draws", "shows",
          "counts", "names", "keeps", "leaves", "meets", "brings", "pushes", "pulls", "finds")
_INTRANS = ("sleeps", "runs", "walks", "sings", "waits", "falls", "rises", "shines", "stops", "turns", "grows",
            "laughs", "works", "plays", "rests", "stays", "arrives", "returns", "speaks", "listens")
_ADJS = ("big", "little", "old", "new", "happy", "quiet", "bright", "dark", "long", "short", "warm", "cold",
         "fast", "slow", "round", "flat", "empty", "full", "heavy", "light", "young", "tall", "soft", "hard",
         "clean", "strange", "simple", "famous", "early", "late", "small", "large", "red", "green", "blue",
         "yellow", "purple", "white", "black", "brown", "orange", "pink", "gray")
_ADVS = ("quickly", "slowly", "often", "never", "always", "again", "today", "there", "here", "together",
         "carefully", "suddenly", "almost", "soon", "still")
_PREPS = ("on", "in", "under", "near", "behind", "above", "below", "beside", "with", "from", "into", "over",
          "across", "between", "to", "at", "by")
_DETS = ("the", "a", "this", "that", "every", "one", "some", "my", "your", "our")
_CONJ = ("and", "but", "so", "because", "while", "when", "after", "before")
_SUBJ = ("i", "you", "we", "they", "he", "she", "it")


_VOCAB = tuple(sorted(set(_NOUNS + _VERBS + _INTRANS + _ADJS + _ADVS + _PREPS + _DETS + _SUBJ + _SYLLABLES
                           + tuple(S.SHAPES) + tuple(S.COLORS) + S.SIZES + S.SIDES + S.ROWS
                           + MOTION_SHAPES + tuple(M.direction_word(c) for c in MOTION_CLASSES)
                           + tuple(str(i) for i in range(20)))))


def _np(rng: random.Random) -> str:
    det = rng.choice(_DETS)
    adj = f"{rng.choice(_ADJS)} " if rng.random() < 0.5 else ""
    return f"{det} {adj}{rng.choice(_NOUNS)}"


def _clause(rng: random.Random) -> str:
    subj = _np(rng) if rng.random() < 0.7 else rng.choice(_SUBJ)
    r = rng.random()
    if r < 0.45:
        body = f"{rng.choice(_VERBS)} {_np(rng)}"
    elif r < 0.75:
        body = f"{rng.choice(_INTRANS)} {rng.choice(_PREPS)} {_np(rng)}"
    else:
        body = f"is {rng.choice(_ADJS)}"
    if rng.random() < 0.3:
        body += f" {rng.choice(_ADVS)}"
    return f"{subj} {body}"


def filler_text(rng: random.Random) -> str:
    """English-like sentences from a small grammar (keeps the tokenizer from being scene-only)."""
    sentences = []
    for _ in range(rng.randint(1, 3)):
        s = _clause(rng)
        if rng.random() < 0.35:
            s += f"{rng.choice(['', ','])} {rng.choice(_CONJ)} {_clause(rng)}"
        r = rng.random()
        if r < 0.15:
            s = f"is it true that {s}?"
        elif r < 0.25:
            s = f"{s}, {rng.randint(0, 2030)} times!"
        else:
            s += rng.choice([".", ".", ".", ";", ":"]) if rng.random() < 0.5 else " ."
        sentences.append(s[0].upper() + s[1:] if rng.random() < 0.3 else s)
    return " ".join(sentences)


def _kv_name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.2:
        return rng.choice(string.ascii_lowercase)
    if r < 0.4:
        return rng.choice(_NOUNS)
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 2)))


def _kv_value(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return str(rng.randint(0, 99))
    if r < 0.7:
        return rng.choice(_ADJS)
    return rng.choice(_NOUNS)


def kv_pairs(rng: random.Random, n_questions: int = 1) -> list[tuple[str, str]]:
    """Key–value recall with random names and values: ``[(context + question, answer), (question, answer),
    ...]``, up to ``n_questions`` distinct keys asked about one context."""
    n = rng.randint(2, 6)
    names: list[str] = []
    while len(names) < n:
        k = _kv_name(rng)
        if k not in names:
            names.append(k)
    values = [_kv_value(rng) for _ in names]
    context = " ".join(f"{k} is {v} ." for k, v in zip(names, values))
    asked = rng.sample(range(n), min(n, n_questions))
    template = "question: what is {}? answer:" if rng.random() < 0.5 else "what is {} ?"
    pairs = [(template.format(names[i]), values[i]) for i in asked]
    return [(f"{context} {pairs[0][0]}", pairs[0][1])] + pairs[1:]


def kv_text(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer) of one key–value question."""
    return kv_pairs(rng)[0]


def copy_text(rng: random.Random) -> tuple[str, str]:
    """(prompt, answer) where the answer repeats a random word sequence of the prompt: a dense signal
    for the look-back-and-copy (induction) circuits that reading facts from context relies on."""
    words = [rng.choice(_VOCAB) for _ in range(rng.randint(3, 12))]
    seq = " ".join(words)
    return f"{seq} . repeat :", seq


def motion_pairs(rng: random.Random, max_questions: int = 1) -> list[tuple[str, str]]:
    """A moving shape told in words, then up to ``max_questions`` questions about it. Shapes of the
    scenes move too, so that the LM reads the shape from the facts rather than learning the clips' three."""
    shape = rng.choice(sorted(set(MOTION_SHAPES) | set(S.SHAPES)))
    direction = M.direction_word(rng.choice(MOTION_CLASSES))
    questions = M.motion_questions(shape, direction, rng)
    rng.shuffle(questions)
    questions = questions[: rng.randint(1, max_questions)]
    facts = M.motion_facts(shape, direction, rng)
    return [(f"{facts} question: {questions[0][0]} answer:", questions[0][1])] + [
        (f"question: {q} answer:", a) for q, a in questions[1:]]


def sound_text(rng: random.Random) -> tuple[str, str]:
    """A sound class told in words, then one of its reference-style captions."""
    label = rng.choice(SOUND_CLASSES)
    return caption_text(M.sound_facts(label, rng), rng.choice(M.CAPTIONS[label]))


def task_example(rng: random.Random, mix: dict[str, float], max_questions: int = 1
                 ) -> tuple[str, list[tuple[str, str]]]:
    """One training text drawn from the mix: ``(kind, [(prompt, answer), ...])``, read as
    ``prompt₁ answer₁ prompt₂ answer₂ … </s>``. VQA, motion and key–value texts ask up to ``max_questions``
    questions about one context (the first prompt carries the context): every answer is a signal to read
    the context, so one sequence teaches several times what a single question would."""
    kinds = sorted(mix)
    kind = rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
    if kind == "vqa":
        scene = S.sample_scene(rng)
        questions = S.questions_for_scene(scene, rng)
        rng.shuffle(questions)
        questions = questions[: rng.randint(1, max_questions)]
        first = vqa_text(scene, questions[0], S.scene_facts(scene, rng))
        return kind, [first] + [(f"question: {q.question} answer:", q.answer) for q in questions[1:]]
    if kind == "caption":
        scene = S.sample_scene(rng)
        facts = S.scene_facts(scene, rng)
        cap = S.canonical_caption(scene) if rng.random() < 0.5 else S.captions_for_scene(scene, rng, n=1)[0]
        return kind, [caption_text(facts, cap)]
    if kind == "motion":
        return kind, motion_pairs(rng, max_questions)
    if kind == "sound":
        return kind, [sound_text(rng)]
    if kind == "kv":
        return kind, kv_pairs(rng, max_questions)
    if kind == "copy":
        return kind, [copy_text(rng)]
    raise ConfigError(f"train.mix: unknown text kind {kind!r} (expected vqa, caption, motion, sound, kv, copy)")


def sequence_text(pairs: list[tuple[str, str]]) -> str:
    return " ".join(f"{prompt} {answer}" for prompt, answer in pairs) + EOS
