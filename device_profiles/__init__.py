"""Device profiles: one YAML per device, the schema that validates them, and the loader.

Importing this package does not import Paddle or Paddle Lite.
"""

from __future__ import annotations

from devicefit.device_profiles._profile import (
    PROFILES_DIR,
    DeviceProfile,
    Reach,
    UnknownDeviceError,
    list_profiles,
    load_profile,
    load_profile_file,
)
from devicefit.device_profiles._schema import SchemaError, load_yaml, parse_yaml

__all__ = [
    "PROFILES_DIR",
    "DeviceProfile",
    "Reach",
    "SchemaError",
    "UnknownDeviceError",
    "list_profiles",
    "load_profile",
    "load_profile_file",
    "load_yaml",
    "parse_yaml",
]
