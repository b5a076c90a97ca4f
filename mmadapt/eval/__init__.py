"""Evaluation metrics (VQA accuracy, captioning scores) and the evaluation loop.

Import the submodules directly (``mmadapt.eval.vqa_metric``, ``mmadapt.eval.caption_metric``); nothing heavy is
imported here.
"""
