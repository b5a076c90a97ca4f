"""Generated datasets, written on first use in the layout of a real format and read like it: one file per
generator, each registering its format (``synthetic_<what>``). ``scene_world`` holds the logic of the synthetic
scenes and ``media_text`` the words about the synthetic clips (both shared with the zoo's pretraining);
``generated`` writes a split once, under a lock.
"""

from mmadapt.data.synthetic import (  # noqa: F401 - importing registers the formats
    audio,
    audiocaps,
    dense,
    graph,
    images,
    points,
    scenes,
    tabular,
    video,
    video_text,
    videoqa,
)
