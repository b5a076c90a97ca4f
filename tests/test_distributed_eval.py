"""Distributed evaluation: ``mmadapt.evaluate`` under torchrun with 2 processes deals the eval batches out over
the ranks, rank 0 gathers the predictions and writes the official result files once, and the scores are
exactly one process's — for VQA and captioning (a perceptual LM), classification (an adapted encoder) and
video QA + retrieval (All-in-One), with a corrupt eval image recorded the same way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
WORKER = TESTS / "eval_worker.py"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}
           and not k.startswith("TORCHELASTIC")}
    env.update(OMP_NUM_THREADS="1", MMADAPT_QUIET="1")
    return env


def _run(cmd: list[str], timeout: float = 600) -> None:
    proc = subprocess.Popen(cmd, cwd=TESTS.parent, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} timed out after {timeout} s; output:\n{out[-6000:]}")
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}; output:\n{out[-6000:]}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The three recipes' data, written once before any process starts (so ranks never race to write them),
    with one truncated eval image in the scenes."""
    import eval_worker

    import mmadapt

    root = tmp_path_factory.mktemp("dist_eval")
    for cfg in eval_worker.recipes(root).values():
        for task in mmadapt.build_tasks(cfg).values():
            task.split("train"), task.split("eval")
    victim = sorted((root / "scenes" / "images" / "val").iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:50])
    return root


@pytest.mark.slow
def test_two_processes_score_exactly_like_one(data, tmp_path):
    _run([sys.executable, str(WORKER), "--root", str(data), "--out", str(tmp_path / "one")])
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", str(WORKER),
          "--root", str(data), "--out", str(tmp_path / "two")])
    one = json.loads((tmp_path / "one" / "scores-rank0.json").read_text())
    two = [json.loads((tmp_path / "two" / f"scores-rank{r}.json").read_text()) for r in (0, 1)]
    assert one["world"] == 1 and [t["world"] for t in two] == [2, 2]
    assert two[0]["scores"] == two[1]["scores"]  # every rank returns rank 0's scores
    scores = one["scores"]
    assert set(scores) == {"scenes", "classification", "video"}
    assert set(scores["scenes"]) == {"vqa", "caption"} and set(scores["video"]) == {"vqa", "retrieval"}
    assert scores["scenes"]["vqa"]["n_errors"] == 5  # the truncated image's five questions
    assert two[0]["scores"] == scores  # exactly the scores of one process
    for name in ("scenes", "classification"):  # the batches were dealt out, not all read twice
        per_rank = [t["batches"][name] for t in two]
        assert min(per_rank) > 0 and sum(per_rank) == one["batches"][name], (name, per_rank)
    # the official files, written once, byte for byte the same
    files = {p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file()}
    assert {Path("scenes/vqa_results.json"), Path("scenes/caption_results.json"), Path("scenes/vqa_errors.json"),
            Path("classification/classification_predictions.jsonl"), Path("video/retrieval_scores.json")} <= files
    for rel in files - {Path("scores-rank0.json")}:
        assert (tmp_path / "two" / rel).read_bytes() == (tmp_path / "one" / rel).read_bytes(), rel
