"""Generated datasets, written on first use in the layout of a real format and read like it: one file per
generator, each registering its format (``synthetic_<what>``; ``media_text`` registers the video QA and
audio captioning sets over the same clips). ``scene_world`` holds the logic of the synthetic scenes (shared
with the zoo's pretraining); ``generated`` writes a split once, under a lock.
"""

from mmadapt.data.synthetic import (  # noqa: F401 - importing registers the formats
    audio,
    dense,
    graph,
    images,
    media_text,
    points,
    scenes,
    tabular,
    video,
    video_text,
)
