"""eP-ALM (Shukor et al., ICCV 2023): config and model."""

from mmadapt.adapters.epalm.config import EPALMConfig
from mmadapt.adapters.epalm.model import EPALM

__all__ = ["EPALM", "EPALMConfig"]
