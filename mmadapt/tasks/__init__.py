"""Tasks: how data becomes training examples and how predictions are scored (importing registers them)."""

from mmadapt.tasks.base import Task
from mmadapt.tasks.caption import CaptionTask
from mmadapt.tasks.classification import ClassificationTask, RegressionTask
from mmadapt.tasks.dense import DenseTask
from mmadapt.tasks.retrieval import RetrievalTask
from mmadapt.tasks.vqa import VQATask

__all__ = ["CaptionTask", "ClassificationTask", "DenseTask", "RegressionTask", "RetrievalTask", "Task", "VQATask"]
