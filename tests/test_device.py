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
