"""gpufix: lint and fix GPU selection (CUDA_VISIBLE_DEVICES, CUDA_DEVICE_ORDER, cuda ordinals)."""

__version__ = "0.1.0"
