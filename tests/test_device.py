"""What of the GPU path can be tested without a GPU."""

import pytest
import torch

from featscope.io import load_torch
from featscope.training import resolve_device


def test_auto_picks_cuda_only_when_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


def test_explicit_cuda_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_checkpoint_saved_on_cuda_loads_on_cpu(tmp_path, monkeypatch):
    # Write a file whose storages are tagged 'cuda:0', exactly as torch.save does on a GPU.
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    bundle = {"steps": torch.arange(3), "params": {"w": torch.randn(3, 4, 5)}}
    torch.save(bundle, tmp_path / "gpu.pt")
    monkeypatch.undo()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "gpu.pt", weights_only=True)
    loaded = load_torch(tmp_path / "gpu.pt")
    assert loaded["params"]["w"].device.type == "cpu"
    assert torch.equal(loaded["params"]["w"], bundle["params"]["w"])


def test_trains_on_cuda_asks_torch_only_where_a_gpu_could_be(monkeypatch):
    from featscope import device

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: asked.append(1) or True)
    monkeypatch.setattr(device, "gpu_device_files", lambda: [])
    assert not device.trains_on_cuda("auto") and not asked  # no driver files: CPU, torch not asked
    assert device.trains_on_cuda("cuda") and device.trains_on_cuda("cuda:1")  # a login node
    assert not device.trains_on_cuda("cpu")
    monkeypatch.setattr(device, "gpu_device_files", lambda: ["/dev/nvidia0"])
    assert device.trains_on_cuda("auto") and asked
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # files, but no usable GPU
    assert not device.trains_on_cuda("auto")


def test_gpu_device_files_finds_driver_files(monkeypatch):
    from featscope import device

    monkeypatch.setattr(
        device.glob,
        "glob",
        lambda p: {"/dev/nvidia[0-9]*": ["/dev/nvidia0", "/dev/nvidia1"], "/dev/kfd": ["/dev/kfd"]}.get(p, []),
    )
    assert device.gpu_device_files() == ["/dev/nvidia0", "/dev/nvidia1", "/dev/kfd"]


@pytest.mark.parametrize(
    "train",
    ['train_one("r", cfg, data, progress=False)', 'train_packed([("r", cfg)], data, progress=False)'],
    ids=["train_one", "train_packed"],
)
def test_training_flushes_subnormals_in_every_thread_of_its_pool(train):
    """A job's first torch parallel region starts after the trainer's entry, so every thread of
    the pool treats subnormals as zero (on Intel CPUs they take a slow path: see
    featscope._subnormals)."""
    import subprocess
    import sys

    code = """
import torch
torch.set_num_threads(2)
from featscope.tasks import make_dataset
from featscope.training import train_one
from featscope.packed import train_packed
cfg = {"task": {"name": "sin2", "d": 3, "f": 2, "n_train": 32, "n_test": 0, "seed": 0},
       "model": {"name": "mlp", "width": 8, "depth": 1}, "optim": {"name": "adam", "lr": 0.01},
       "train": {"steps": 3, "loss": "mse"}, "schedule": {"every": 3}, "seed": 0}
data = make_dataset(cfg["task"])
{train}
tiny = torch.full((4_000_000,), 1e-39)  # subnormal in float32; large enough to split over threads
print((tiny * 1.0).count_nonzero().item(), torch.get_num_threads())
""".replace("{train}", train)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    if not torch.set_flush_denormal(False):  # this CPU cannot flush (set_flush_denormal says so)
        pytest.skip("the CPU has no flush-to-zero mode")
    assert out.stdout.split() == ["0", "2"]
