"""Video QA (MSRVTT-QA / MSVD-QA JSON) and audio captioning (AudioCaps CSV) formats, and their synthetic sets."""

from __future__ import annotations

import csv
import json

import pytest

from mmadapt.errors import DataError


def test_video_qa_reads_msrvtt_and_msvd_layouts_and_scores_as_exact_match(tmp_path):
    from mmadapt.data.formats.msrvtt_qa import load_video_qa, write_vqa_files
    from mmadapt.data.formats.vqa_v2 import write_vqa_results
    from mmadapt.eval.vqa_metric import score_vqa_files

    qa = [{"id": 5, "video_id": 7010, "question": "what is a man doing?", "answer": "cooking"},
          {"id": 6, "video_id": 7011, "question": "who is singing?", "answer": "a woman"}]
    (tmp_path / "msrvtt.json").write_text(json.dumps(qa))
    samples = load_video_qa(tmp_path / "msrvtt.json", tmp_path / "videos")
    assert [s.question_id for s in samples] == [5, 6]
    assert samples[0].image_path == tmp_path / "videos" / "video7010.mp4"
    assert samples[0].answers == ["cooking"] * 10 and samples[1].question_type == "who"

    msvd = [{"id": 0, "video": "-4wsuPCjDBc_5_15", "question": "what is the cat doing?", "answer": "play"}]
    (tmp_path / "msvd.json").write_text(json.dumps(msvd))
    (s,) = load_video_qa(tmp_path / "msvd.json", tmp_path, "{video}.avi")
    assert s.image_path == tmp_path / "-4wsuPCjDBc_5_15.avi"

    q, a = write_vqa_files(samples, tmp_path / "q.json", tmp_path / "a.json")
    # ten identical answers: the official scorer compares the raw strings (it normalises only when they differ)
    results = write_vqa_results(tmp_path / "r.json", [(5, "cooking"), (6, "man")])
    scores = score_vqa_files(q, a, results)
    assert scores["overall"] == 50.0 and scores["perQuestion"] in ({"5": 100.0, "6": 0.0}, {5: 100.0, 6: 0.0})


@pytest.mark.parametrize("items, message", [
    ([{"id": 1, "video_id": 1, "question": "q?"}], r"missing or non-string field\(s\) answer"),
    ([{"id": 1, "video_id": 1, "question": "q?", "answer": "a"}] * 2, "duplicate question id 1"),
    ({"not": "a list"}, "expected a non-empty JSON list"),
])
def test_video_qa_errors_name_the_file_and_item(tmp_path, items, message):
    from mmadapt.data.formats.msrvtt_qa import load_video_qa

    (tmp_path / "qa.json").write_text(json.dumps(items))
    with pytest.raises(DataError, match=message) as err:
        load_video_qa(tmp_path / "qa.json")
    assert "qa.json" in str(err.value)


def test_audiocaps_groups_the_captions_of_a_clip(tmp_path):
    from mmadapt.data.formats.audiocaps import load_audiocaps

    rows = [("1", "abc", "30", "a dog barks"), ("2", "abc", "30", "barking"), ("3", "xyz", "0", "rain falls")]
    with open(tmp_path / "val.csv", "w", newline="") as f:
        csv.writer(f).writerows([("audiocap_id", "youtube_id", "start_time", "caption"), *rows])
    clips = load_audiocaps(tmp_path / "val.csv", tmp_path / "wav", "{youtube_id}_{start_time}.wav")
    assert [c.captions for c in clips] == [["a dog barks", "barking"], ["rain falls"]]
    assert clips[0].image_path == tmp_path / "wav" / "abc_30.wav" and [c.image_id for c in clips] == [0, 1]
    (tmp_path / "bad.csv").write_text("audiocap_id,youtube_id\n1,abc\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) caption"):
        load_audiocaps(tmp_path / "bad.csv")


def test_synthetic_video_qa_and_audio_captions_are_consistent_with_their_clips(tmp_path):
    from mmadapt.data.formats.audiocaps import load_audiocaps
    from mmadapt.data.formats.msrvtt_qa import load_video_qa
    from mmadapt.data.synthetic.audiocaps import write_audiocaps_dataset
    from mmadapt.data.synthetic.media_text import AUDIO_TEMPLATE, CAPTIONS, VIDEO_TEMPLATE
    from mmadapt.data.synthetic.videoqa import write_videoqa_dataset

    qa_path = write_videoqa_dataset(tmp_path / "v", "val", 8, seed=0)
    samples = load_video_qa(qa_path, tmp_path / "v", VIDEO_TEMPLATE)
    manifest = [json.loads(ln) for ln in (tmp_path / "v" / "val.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and all(s.image_path.is_file() for s in samples)
    for clip, (direction, shape) in zip(manifest, zip(samples[::2], samples[1::2])):
        assert direction.answers[0] == clip["label"].removeprefix("moving_") and shape.answers[0] == clip["shape"]
    assert write_videoqa_dataset(tmp_path / "v2", "val", 8, seed=0).read_bytes() == qa_path.read_bytes()

    csv_path = write_audiocaps_dataset(tmp_path / "a", "train", 10, seed=0)
    clips = load_audiocaps(csv_path, tmp_path / "a", AUDIO_TEMPLATE)
    labels = [json.loads(ln)["label"] for ln in (tmp_path / "a" / "train.jsonl").read_text().splitlines()]
    assert len(clips) == 10 and all(c.image_path.is_file() for c in clips)
    for clip, label in zip(clips, labels):
        assert sorted(clip.captions) == sorted(CAPTIONS[label])


def test_the_zoo_lm_reads_the_clips_told_in_words_with_the_datasets_questions_and_answers():
    """The zoo LM's motion / sound pretraining texts use the video QA set's questions and answer words and the
    audio set's captions, stated as facts the answer can be read from."""
    import random

    from mmadapt.data.synthetic.media_text import CAPTIONS, DIRECTION_QUESTION, SHAPE_QUESTION, SOUND_NAMES
    from mmadapt.errors import ConfigError
    from mmadapt.zoo.tiny_opt import motion_pairs, sound_text, task_example

    rng = random.Random(0)
    seen_questions = set()
    for _ in range(200):
        pairs = motion_pairs(rng, max_questions=4)
        facts = pairs[0][0].split(" question: ")[0]
        shape, direction = facts.split()[1], facts.split()[-2]
        for prompt, answer in pairs:
            question = prompt.split("question: ")[-1].removesuffix(" answer:")
            seen_questions.add(question)
            expected = {DIRECTION_QUESTION: direction, SHAPE_QUESTION: shape,
                        f"which way does the {shape} move?": direction}.get(question)
            if expected is None:  # "is the shape moving X?"
                expected = "yes" if question.endswith(f" {direction}?") else "no"
            assert answer == expected, (prompt, answer)
    assert {DIRECTION_QUESTION, SHAPE_QUESTION} <= seen_questions

    for _ in range(50):
        prompt, caption = sound_text(rng)
        label = next(k for k, name in SOUND_NAMES.items() if f" {name} ." in prompt)
        assert prompt.endswith(" caption:") and caption in CAPTIONS[label]

    kinds = {task_example(rng, {"motion": 1, "sound": 1, "copy": 1})[0] for _ in range(60)}
    assert kinds == {"motion", "sound", "copy"}
    with pytest.raises(ConfigError, match="train.mix: unknown text kind 'poems'"):
        task_example(rng, {"poems": 1})
