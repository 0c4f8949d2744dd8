"""Whether training will run on a GPU, answered without importing torch where none can be.

The workflow asks this while Snakemake starts (to give training jobs a `gpu` resource).
Importing torch to ask costs a second or more on every start; a machine without the
device files a GPU driver creates cannot have one for torch to find.
"""

from __future__ import annotations

import glob

# NVIDIA's driver, WSL2's GPU bridge, AMD's ROCm (torch.cuda covers ROCm too).
GPU_DEVICE_FILES = ("/dev/nvidia[0-9]*", "/dev/nvidiactl", "/dev/dxg", "/dev/kfd")


def gpu_device_files() -> list[str]:
    return [path for pattern in GPU_DEVICE_FILES for path in glob.glob(pattern)]


def trains_on_cuda(device: str) -> bool:
    """True if `device` ('auto', 'cpu', 'cuda', 'cuda:N') makes training jobs use CUDA.
    An explicit 'cuda' says yes even where no GPU is seen (a cluster's login node)."""
    if device.startswith("cuda"):
        return True
    if device != "auto" or not gpu_device_files():
        return False
    from .training import resolve_device  # a GPU may be here: ask torch

    return resolve_device("auto").type == "cuda"
