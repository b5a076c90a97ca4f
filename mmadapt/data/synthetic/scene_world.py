"""Synthetic scenes: objects with colour, shape, size and position; questions and captions about them.

This module holds the *logic* of the synthetic vision-language task (what a scene is, how it is drawn,
which questions and captions describe it). Writing it to disk in the official VQA v2 / COCO formats lives
in :mod:`mmadapt.data.synthetic.scenes`; the zoo uses the same logic to pretrain its tiny ViT (on rendered
scenes) and its tiny LM (on text that states scene facts and asks about them).

A scene holds 1..``max_objects`` objects; within one scene shapes are distinct and colours are distinct,
so "the circle" and "the red object" always name exactly one object. Positions are on a 2×2 grid of
halves (left / right, top / bottom) with jitter, and no two objects share a grid cell.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 30),
    "purple": (140, 60, 170),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: tuple[str, ...] = ("small", "large")
SIDES: tuple[str, ...] = ("left", "right")
ROWS: tuple[str, ...] = ("top", "bottom")
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}


@dataclass(frozen=True)
class SceneObject:
    shape: str
    color: str
    size: str
    side: str  # "left" | "right"
    row: str  # "top" | "bottom"


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]

    def by_shape(self, shape: str) -> SceneObject | None:
        return next((o for o in self.objects if o.shape == shape), None)

    def by_color(self, color: str) -> SceneObject | None:
        return next((o for o in self.objects if o.color == color), None)


@dataclass(frozen=True)
class Question:
    question: str
    answer: str
    question_type: str  # VQA v2 style prefix, e.g. "what color is the"
    answer_type: str  # "yes/no" | "number" | "other"


def sample_scene(rng: random.Random, max_objects: int = 3) -> Scene:
    """Draw a scene with 1..max_objects objects, distinct shapes, distinct colours, distinct cells."""
    n = rng.randint(1, min(max_objects, len(SHAPES)))
    shapes = rng.sample(SHAPES, n)
    colors = rng.sample(list(COLORS), n)
    cells = rng.sample([(s, r) for s in SIDES for r in ROWS], n)
    objects = tuple(
        SceneObject(shape=sh, color=co, size=rng.choice(SIZES), side=cell[0], row=cell[1])
        for sh, co, cell in zip(shapes, colors, cells)
    )
    return Scene(objects)


def render_scene(scene: Scene, image_size: int = 64, rng: random.Random | None = None) -> Image.Image:
    """Draw ``scene`` as an RGB image of ``image_size``² pixels.

    ``rng`` adds jitter to positions and a little background noise; without it the drawing is canonical.
    """
    s = image_size
    background = (235, 235, 235) if rng is None else tuple(rng.randint(215, 250) for _ in range(3))
    img = Image.new("RGB", (s, s), background)
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        radius = s * (0.20 if obj.size == "large" else 0.11)
        cx = s * (0.25 if obj.side == "left" else 0.75)
        cy = s * (0.25 if obj.row == "top" else 0.75)
        if rng is not None:
            slack = s * 0.25 - radius - 1
            cx += rng.uniform(-slack, slack)
            cy += rng.uniform(-slack, slack)
        color = COLORS[obj.color]
        if obj.shape == "circle":
            draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=color)
        elif obj.shape == "square":
            r = radius * 0.9
            draw.rectangle([cx - r, cy - r, cx + r, cy + r], fill=color)
        elif obj.shape == "triangle":
            pts = [(cx + radius * math.cos(a), cy + radius * math.sin(a))
                   for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
            draw.polygon(pts, fill=color)
        else:  # pragma: no cover - SHAPES is closed
            raise ValueError(f"unknown shape {obj.shape!r}")
    return img


def questions_for_scene(scene: Scene, rng: random.Random) -> list[Question]:
    """One question of each family (colour, shape, count, position, yes/no) about ``scene``.

    Yes/no questions are balanced: half ask about an object in the scene, half about a colour-shape
    pair that is absent.
    """
    target = rng.choice(scene.objects)
    qs = [
        Question(f"what color is the {target.shape}?", target.color, "what color is the", "other"),
        Question(f"what shape is the {target.color} object?", target.shape, "what shape is the", "other"),
        Question("how many objects are there?", str(len(scene.objects)), "how many", "number"),
        Question(f"is the {target.shape} on the left or the right?", target.side, "is the", "other"),
    ]
    if rng.random() < 0.5:
        qs.append(Question(f"is there a {target.color} {target.shape}?", "yes", "is there a", "yes/no"))
    else:
        present = {(o.color, o.shape) for o in scene.objects}
        absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present]
        color, shape = rng.choice(absent)
        qs.append(Question(f"is there a {color} {shape}?", "no", "is there a", "yes/no"))
    return qs


def _describe(obj: SceneObject, rng: random.Random) -> str:
    where = f"{obj.row} {obj.side}" if rng.random() < 0.5 else obj.side
    return f"a {obj.size} {obj.color} {obj.shape} on the {where}"


def captions_for_scene(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """``n`` reference captions (COCO has five per image), varying object order and wording."""
    captions = []
    for _ in range(n):
        objs = list(scene.objects)
        rng.shuffle(objs)
        parts = [_describe(o, rng) for o in objs]
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
        opener = rng.choice(["", "there is ", "a picture of ", "an image with "])
        if opener == "there is " and len(parts) > 1:
            opener = "there are "
            body = f"{NUMBER_WORDS[len(parts)]} objects: " + body
        captions.append((opener + body).strip() + ".")
    return captions


def canonical_caption(scene: Scene) -> str:
    """A deterministic caption (objects left to right, top to bottom): the zoo LM's target text."""
    objs = sorted(scene.objects, key=lambda o: (SIDES.index(o.side), ROWS.index(o.row)))
    parts = [f"a {o.size} {o.color} {o.shape} on the {o.side}" for o in objs]
    return (parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]) + "."


def scene_facts(scene: Scene, rng: random.Random) -> str:
    """The scene stated as text facts in random order (what the zoo LM learns to read)."""
    objs = list(scene.objects)
    rng.shuffle(objs)
    return " ".join(f"the {o.shape} is {o.size} , {o.color} and on the {o.row} {o.side} ." for o in objs)


def answer_vocabulary() -> list[str]:
    """Every answer the synthetic questions can have (for the ranking answer mode)."""
    return sorted(set(COLORS) | set(SHAPES) | {"1", "2", "3"} | set(SIDES) | {"yes", "no"})
