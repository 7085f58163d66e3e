"""Engine tests need 8 (fake CPU) devices; CI sets this flag, a bare ``pytest`` gets it here.

XLA reads the flag when the backend first starts, which is after collection imports jax.
"""

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
