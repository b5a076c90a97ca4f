"""mmadapt: adapt frozen foundation models to new modalities with very few trained parameters.

The public API (see the README for a walk-through)::

    mmadapt.load_recipe(path, overrides)  -> Config
    mmadapt.build_model(config)           -> PerceptualLM (frozen LM + frozen encoder + adapter), or
                                             AdaptedEncoder (tokenizer + frozen shared encoder + head)
    mmadapt.wrap(lm, adapter, tokenizer=, vision=, processor=) -> PerceptualLM around loaded HF objects
    mmadapt.train(config, model=...)      -> TrainResult (DeepSpeed; checkpoints in the PEFT layout)
    mmadapt.evaluate(model, config)       -> {task: scores}
    model.save_pretrained / Cls.from_pretrained / model.print_trainable_parameters
"""

from mmadapt.api import TrainResult, build_model, build_tasks, evaluate, load_recipe, train
from mmadapt.config import Config
from mmadapt.errors import ConfigError, DataError, MMAdaptError
from mmadapt.io.image import load_image
from mmadapt.models.adapted_encoder import AdaptedEncoder
from mmadapt.models.perceptual_lm import PerceptualLM
from mmadapt.models.wrap import wrap

__version__ = "0.1.0"

__all__ = [
    "AdaptedEncoder", "Config", "ConfigError", "DataError", "MMAdaptError", "PerceptualLM", "TrainResult", "__version__",
    "build_model", "build_tasks", "evaluate", "load_image", "load_recipe", "train", "wrap",
]
