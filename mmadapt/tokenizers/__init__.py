"""Modality tokenizers: raw inputs → TokenBatch in a shared width (importing this registers them).

Each tokenizer file holds its config dataclass (what ``tokenizers/<modality>.yaml`` sets), the data side
(``load`` a file through :mod:`mmadapt.io`, ``collate`` a batch) and the trained embedding (``forward``).
"""

from mmadapt.tokenizers.audio import AudioTokenizer
from mmadapt.tokenizers.base import TokenBatch, Tokenizer
from mmadapt.tokenizers.graph import GraphTokenizer
from mmadapt.tokenizers.image import ImagePatchTokenizer
from mmadapt.tokenizers.point_cloud import PointCloudTokenizer
from mmadapt.tokenizers.tabular import TabularTokenizer
from mmadapt.tokenizers.text import TextTokenizer
from mmadapt.tokenizers.video import VideoTokenizer

__all__ = ["AudioTokenizer", "GraphTokenizer", "ImagePatchTokenizer", "PointCloudTokenizer", "TabularTokenizer",
           "TextTokenizer", "TokenBatch", "Tokenizer", "VideoTokenizer"]
