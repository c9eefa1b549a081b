"""ios-core: inter-operator scheduling of CNN inference on NVIDIA GPUs (the IOS method, rebuilt for Hopper)."""

__version__ = "0.1.0"
