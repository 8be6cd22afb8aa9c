"""What can be searched, and how one point of the space becomes a real, deployable student model.

Importing this package does not import Paddle; building or exporting a model does.
"""

from __future__ import annotations

from devicefit.spaces._candidate import PRECISIONS, Candidate, Precision
from devicefit.spaces._encoder import EncoderStructure, Importance, UnsupportedModelError, find_encoder
from devicefit.spaces._export import Artifact, export_inference_model
from devicefit.spaces._space import SearchSpace, SpaceBounds, TransformerEncoderSpace

__all__ = [
    "PRECISIONS",
    "Artifact",
    "Candidate",
    "EncoderStructure",
    "Importance",
    "Precision",
    "SearchSpace",
    "SpaceBounds",
    "TransformerEncoderSpace",
    "UnsupportedModelError",
    "export_inference_model",
    "find_encoder",
]
