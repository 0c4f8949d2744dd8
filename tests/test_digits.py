"""The `digits` task: scikit-learn's bundled 8×8 images, split and labelled as documented."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from featscope.models import build_model
from featscope.tasks import make_dataset, task_kind, task_outputs

CFG = {"name": "digits", "n_train": 1200, "n_test": 597, "seed": 0, "random_labels": False}


@pytest.fixture(scope="module")
def raw():
    d = load_digits()
    return d.images, d.target


def test_split_is_disjoint_covers_the_set_and_keeps_image_label_pairs(raw):
    images, target = raw
    data = make_dataset(CFG)
    assert data["x_train"].shape == (1200, 1, 8, 8) and data["x_test"].shape == (597, 1, 8, 8)
    assert data["x_train"].dtype == np.float32 and data["y_train"].dtype == np.int64
    # Brute force: find every returned image among the originals (pixels are integers / 16).
    lookup = {img.tobytes(): i for i, img in enumerate(images.astype(np.int64))}
    assert len(lookup) > 1700  # few exact duplicates in the set
    index = {}
    for split in ("train", "test"):
        pixels = np.rint(data[f"x_{split}"][:, 0] * 16).astype(np.int64)
        assert np.allclose(pixels / 16, data[f"x_{split}"][:, 0])
        found = [lookup[p.tobytes()] for p in pixels]
        assert np.array_equal(target[found], data[f"y_{split}"])
        index[split] = set(found)
    assert len(index["train"] | index["test"]) >= len(lookup) - 5
    assert data["x_train"].min() == 0.0 and data["x_train"].max() == 1.0


def test_seed_changes_the_split_and_is_deterministic():
    a, b, c = make_dataset(CFG), make_dataset(CFG), make_dataset({**CFG, "seed": 1})
    assert np.array_equal(a["x_train"], b["x_train"])
    assert not np.array_equal(a["y_train"], c["y_train"])


def test_random_labels_permute_training_labels_only():
    clean, shuffled = make_dataset(CFG), make_dataset({**CFG, "random_labels": True})
    assert np.array_equal(clean["x_train"], shuffled["x_train"])
    assert np.array_equal(np.bincount(clean["y_train"]), np.bincount(shuffled["y_train"]))
    assert (clean["y_train"] == shuffled["y_train"]).mean() < 0.2  # ≈ 1/10 agree by chance
    assert np.array_equal(clean["y_test"], shuffled["y_test"])


def test_too_many_samples_is_named():
    with pytest.raises(ValueError, match="n_train \\+ n_test = 1800"):
        make_dataset({**CFG, "n_train": 1500, "n_test": 300})


def test_classification_with_ten_classes_that_the_cnn_and_mlp_take():
    assert task_kind("digits") == "classification" and task_outputs(CFG) == 10
    x = torch.from_numpy(make_dataset({**CFG, "n_train": 8, "n_test": 8})["x_train"])
    for model in ({"name": "cnn", "width": 16, "batch_norm": True}, {"name": "mlp", "width": 16, "depth": 1}):
        in_dim = 1 if model["name"] == "cnn" else 64
        assert build_model(model, in_dim, 10)(x).shape == (8, 10)
