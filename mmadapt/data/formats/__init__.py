"""Real dataset formats, one file each: a typed config dataclass and a reader registered by name
(``format:`` in a recipe; :mod:`mmadapt.data.split` says what a reader returns).

Adding a format is one new file here and its name in the import below.
"""

from mmadapt.data.formats import (  # noqa: F401 - importing registers the formats
    audiocaps,
    coco_captions,
    easy_vqa,
    hf_dataset,
    karpathy,
    llava,
    manifest,
    modelnet40,
    msrvtt_qa,
    msrvtt_retrieval,
    pascal_context,
    scanobjectnn,
    sklearn_table,
    table,
    vqa_v2,
    webdataset,
)
