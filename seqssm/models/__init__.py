"""Models built from the blocks: the backbone and the language-model head."""

from seqssm.models.backbone import Backbone
from seqssm.models.config import ModelConfig
from seqssm.models.lm import MambaLMHeadModel
from seqssm.models.pretrained import from_pretrained, save_pretrained

__all__ = ["Backbone", "MambaLMHeadModel", "ModelConfig", "from_pretrained", "save_pretrained"]
