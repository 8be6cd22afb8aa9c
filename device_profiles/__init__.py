"""Device profiles: one YAML per device, the schema that validates them, the loader, the kernel-level
latency predictor and its calibration.

The pipeline is the module layout: ``_program`` (Paddle Lite's optimized program, as ``opt`` writes it) ->
``_shapes`` (shapes of its kernels) -> ``_features`` (cost features per kernel) -> ``_predictor``
(coefficients from the profile -> latency); ``_probes`` and ``_calibrate`` build a predictor for a device
(``_fit`` fits it); ``_seed`` derives uncalibrated predictors from public figures.

Importing this package does not import Paddle or Paddle Lite.
"""

from __future__ import annotations

from devicefit.device_profiles._predictor import (
    KernelCost,
    Prediction,
    PredictorError,
    PredictorParams,
    Provenance,
    ShapeFactorRule,
    SubgraphCost,
    UncoveredKernelError,
    predict_latency,
)
from devicefit.device_profiles._profile import (
    PROFILES_DIR,
    PROFILES_DIR_ENV,
    DeviceProfile,
    ProfileFile,
    Reach,
    UnknownDeviceError,
    dump_profile,
    find_profiles,
    list_profiles,
    load_profile,
    load_profile_file,
    next_version,
    user_profiles_dir,
    write_profile,
)
from devicefit.device_profiles._schema import SchemaError, load_yaml, parse_yaml

__all__ = [
    "PROFILES_DIR",
    "PROFILES_DIR_ENV",
    "DeviceProfile",
    "KernelCost",
    "Prediction",
    "PredictorError",
    "PredictorParams",
    "ProfileFile",
    "Provenance",
    "Reach",
    "SchemaError",
    "ShapeFactorRule",
    "SubgraphCost",
    "UncoveredKernelError",
    "UnknownDeviceError",
    "dump_profile",
    "find_profiles",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "load_yaml",
    "next_version",
    "parse_yaml",
    "predict_latency",
    "user_profiles_dir",
    "write_profile",
]
