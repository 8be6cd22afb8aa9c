"""What can be searched, and how one point of the space becomes a real, deployable student model.

Importing this package does not import Paddle; building or exporting a model does.
"""

from __future__ import annotations

from devicefit.spaces._adapters import DEFAULT_ADAPTERS, BertAdapter, TransformerEncoderAdapter, ViTAdapter
from devicefit.spaces._candidate import (
    CALIBRATIONS,
    PRECISIONS,
    WEIGHT_ONLY_BITS,
    Calibration,
    Candidate,
    Precision,
    WeightOnlyBits,
)
from devicefit.spaces._export import Artifact, QuantizationInfo, export_inference_model, program_logits
from devicefit.spaces._importance import Importance
from devicefit.spaces._layout import (
    BlockLayout,
    LayoutMismatch,
    LocatedBlocks,
    ModelAdapter,
    ModelLayout,
    UnsupportedModelError,
    find_layout,
)
from devicefit.spaces._precision import QuantizationError, lite_deployment_problem
from devicefit.spaces._program_space import ProgramSpace
from devicefit.spaces._space import BoundsError, SearchSpace, SpaceBounds, TransformerEncoderSpace, TransformerSpace

__all__ = [
    "CALIBRATIONS",
    "DEFAULT_ADAPTERS",
    "PRECISIONS",
    "WEIGHT_ONLY_BITS",
    "Artifact",
    "BertAdapter",
    "BlockLayout",
    "Calibration",
    "Candidate",
    "Importance",
    "LayoutMismatch",
    "LocatedBlocks",
    "ModelAdapter",
    "ModelLayout",
    "Precision",
    "ProgramSpace",
    "QuantizationError",
    "QuantizationInfo",
    "SearchSpace",
    "SpaceBounds",
    "BoundsError",
    "TransformerEncoderAdapter",
    "TransformerEncoderSpace",
    "TransformerSpace",
    "UnsupportedModelError",
    "ViTAdapter",
    "WeightOnlyBits",
    "export_inference_model",
    "find_layout",
    "lite_deployment_problem",
    "program_logits",
]
