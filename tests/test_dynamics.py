import math

import numpy as np
import pandas as pd
import pytest
import torch
from long_form import pandas_long_form

from featscope.models import ModularNet, OneHotNet
from featscope.observables import dynamics as dyn
from featscope.training import zero_mean_mse


def _stacked_models(depth: int):
    """The three models the library evaluates as batched products, each with its task and loss."""
    return pytest.mark.parametrize(
        "model,task,loss",
        [
            (
                {"name": "mlp", "width": 16, "depth": depth},
                {"name": "sin2", "d": 3, "f": 2, "n_train": 50, "n_test": 0},
                "mse",
            ),
            ({"name": "modnet", "width": 12}, {"name": "modadd", "M": 7, "train_fraction": 0.6}, "cross_entropy"),
            ({"name": "onehot", "width": 12}, {"name": "modadd", "M": 7, "train_fraction": 0.6}, "zero_mean_mse"),
        ],
        ids=["mlp", "modnet", "onehot"],
    )


def test_pairwise_cosine_matches_loop():
    rows = torch.randn(6, 9)
    rows[2] = 0  # a zero row has no direction and is skipped
    live = [r for r in rows.double() if r.norm() > 0]
    cos = [float(a @ b / (a.norm() * b.norm())) for i, a in enumerate(live) for j, b in enumerate(live) if i != j]
    assert dyn.mean_pairwise_cosine(rows) == pytest.approx(np.mean(cos))
    assert dyn.feature_diversity(rows) == pytest.approx(1 - np.mean(np.abs(cos)))


def _loop_cosine(rows):
    live = [r for r in rows.double() if r.norm() > 0]
    cos = [float(a @ b / (a.norm() * b.norm())) for i, a in enumerate(live) for j, b in enumerate(live) if i != j]
    return np.mean(cos) if cos else math.nan


def test_dynamics_over_stacks_match_loops_map_by_map():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(4, 6, 9, generator=gen)
    rows[1, 2] = 0  # one zero row
    rows[2, 1:] = 0  # one live row: no pairs
    rows[3] = 0
    want = [_loop_cosine(r) for r in rows]
    for block in (2**30, 6 * 9 * 8):  # all sets at once; one at a time
        got = dyn.batched_mean_pairwise_cosine(rows, block_bytes=block).numpy()
        assert np.allclose(got, want, rtol=1e-12, equal_nan=True) and np.isnan(got[2:]).all()
    feats = torch.randn(5, 30, 4, generator=gen) + 3.0
    centred = feats.double().numpy() - feats.double().numpy().mean(axis=1, keepdims=True)
    grams = [c.T @ c / 30 for c in centred]
    diag, off = dyn.batched_gram_statistics(feats)
    assert np.allclose(diag, [np.diag(g).mean() for g in grams], rtol=1e-12)
    assert np.allclose(off, [(g.sum() - np.trace(g)) / 12 for g in grams], rtol=1e-10)
    for block in (2**30, 30 * 4 * 8 * 2):  # all maps at once; two at a time
        norms = dyn.batched_norms(feats, block_bytes=block)
        assert np.allclose(norms, [np.sqrt((f.double().numpy() ** 2).sum()) for f in feats], rtol=1e-12)


def test_diversity_extremes():
    same = torch.ones(5, 3)
    assert dyn.feature_diversity(same) == pytest.approx(0.0)
    assert dyn.feature_diversity(torch.eye(4)) == pytest.approx(1.0)


def test_effective_rank_of_isotropic_and_rank_one():
    assert dyn.effective_rank(torch.eye(7)) == pytest.approx(7.0)
    assert dyn.effective_rank(torch.outer(torch.randn(5), torch.randn(4))) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("m", [11, 12])
def test_fourier_purity_of_pure_and_mixed_neurons(m):
    z = torch.arange(m, dtype=torch.float64)
    pure = torch.stack([torch.cos(2 * math.pi * 3 * z / m), torch.sin(2 * math.pi * 3 * z / m + 1.0)])
    mixed = torch.stack([torch.cos(2 * math.pi * 1 * z / m) + torch.cos(2 * math.pi * 2 * z / m), torch.zeros(m)])
    purity, freq = dyn.fourier_purity(torch.stack([pure, mixed]))
    assert purity[0] == pytest.approx(1.0) and freq[0] == 3
    assert purity[1] == pytest.approx(0.5) and freq[1] in (1, 2)
    # Brute-force twin: DFT energy by explicit sums, f and M-f together.
    w = mixed[0].numpy()
    energy = [abs(sum(w[t] * np.exp(-2j * np.pi * f * t / m) for t in range(m))) ** 2 for f in range(m)]
    share1 = (energy[1] + energy[m - 1]) / sum(energy)
    assert dyn.fourier_energy(mixed[None])[0, 1] / dyn.fourier_energy(mixed[None])[0].sum() == pytest.approx(share1)
    assert dyn.distinct_frequencies(torch.stack([pure, pure, mixed]), min_purity=0.9) == 1


def test_gram_statistics_match_numpy():
    f = torch.randn(40, 5)
    c = f.double().numpy() - f.double().numpy().mean(0)
    g = c.T @ c / 40
    diag, off = dyn.gram_statistics(f)
    assert diag == pytest.approx(np.diag(g).mean())
    assert off == pytest.approx((g.sum() - np.trace(g)) / 20)


def test_zero_mean_mse_matches_definition():
    out = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    y = torch.nn.functional.one_hot(labels, 5).double()
    proj = torch.eye(5, dtype=torch.float64) - 1 / 5  # P⊥1
    expected = ((y - out.double()) @ proj).pow(2).sum(1).mean()
    assert zero_mean_mse(out, labels).item() == pytest.approx(expected.item(), rel=1e-6)
    assert zero_mean_mse(out + 3.0, labels).item() == pytest.approx(zero_mean_mse(out, labels).item(), rel=1e-5)


def test_input_weights_are_the_effective_one_hot_weights():
    for model in (ModularNet(7, 4), OneHotNet(7, 4)):
        x = torch.tensor([[2, 5]])
        pre = model.forward_features(x)[1].pre["h1"][0]
        w = model.input_weights()
        bias = model.hidden[0].bias if model.hidden[0].bias is not None else 0
        assert torch.allclose(pre, w[:, 0, 2] + w[:, 1, 5] + bias, atol=1e-6)


def _small_mlp_run(steps: int, every: int):
    """The checkpoints and data of a [3, 16, 16, 1] MLP trained on sin² for `steps` steps."""
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {"name": "sin2", "d": 3, "f": 2, "n_train": 50, "n_test": 0, "seed": 0},
        "model": {"name": "mlp", "width": 16, "depth": 2},
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": steps, "loss": "mse"},
        "schedule": {"every": every},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    return train_one("r", cfg, data, progress=False).checkpoints, data


def test_observe_chunks_shrink_for_wide_features_and_give_the_same_rows(monkeypatch):
    """Checkpoints are observed in chunks sized to a feature budget; the rows do not depend
    on the chunking (families that compare checkpoints carry state across chunks)."""
    from featscope import observe

    bundle, data = _small_mlp_run(steps=40, every=4)
    families = {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 3}, "weights": {}, "gradients": {}}
    whole = observe.observe_families("r", families, bundle, data)
    assert [len(s.steps) for s in observe.snapshots(bundle, data)] == [11]
    per_checkpoint = 50 * (3 + 4 * 16 + 1) * 4  # inputs, pre and post of two layers, output
    monkeypatch.setattr(observe, "FEATURE_BUDGET", 3 * per_checkpoint)
    assert [len(s.steps) for s in observe.snapshots(bundle, data)] == [3, 3, 3, 2]
    chunked = observe.observe_families("r", families, bundle, data)
    for name in families:
        pd.testing.assert_frame_equal(whole[name], chunked[name], check_exact=False, rtol=1e-9, atol=1e-12)


@_stacked_models(depth=2)
def test_gradients_batched_over_checkpoints_match_one_model_at_a_time(model, task, loss):
    from featscope.models import layer_of_parameter
    from featscope.observables import families, rows
    from featscope.observe import snapshots
    from featscope.tasks import make_dataset
    from featscope.training import loss_fn, per_run_loss_and_gradient, task_kind, train_one

    cfg = {
        "task": {**task, "seed": 0},
        "model": model,
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 20, "loss": loss},
        "schedule": {"every": 5},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    [snap] = list(snapshots(bundle, data))
    x = torch.as_tensor(data["x_train"])
    x = x.float() if x.is_floating_point() else x.long()
    y = torch.as_tensor(data["y_train"])
    y = y.float() if y.is_floating_point() else y.long()
    criterion = loss_fn(task_kind(task["name"]), loss)
    batched = rows.frame(
        "r",
        [
            families._gradient_frame(
                snap.steps,
                *families._stacked_gradients(snap, x, y, per_run_loss_and_gradient(task_kind(task["name"]), loss)),
            )
        ],
    )
    alone = rows.frame(
        "r", [families._gradient_frame(snap.steps, *families._one_by_one_gradients(snap, x, y, criterion))]
    )
    # float32 products summed in another order (batched vs per-model)
    pd.testing.assert_frame_equal(batched, alone, check_exact=False, rtol=1e-4, atol=1e-7)
    # Brute-force twin: each checkpoint's model, autograd and the definitions, one by one.
    for i, step in enumerate(snap.steps):
        model_i = snap.model_at(i)
        out, feats = model_i.forward_features(x)
        hs = [h for h in feats.post.values()]
        for h in hs:
            h.retain_grad()
        criterion(out, y).backward()
        grads = {n: p.grad.double() for n, p in model_i.named_parameters() if p.grad is not None}
        want = {("grad_norm", None): math.sqrt(sum(float((g**2).sum()) for g in grads.values()))}
        want.update({("grad_norm", layer_of_parameter(n)): float(g.norm()) for n, g in grads.items() if g.dim() >= 2})
        if "hidden.0.weight" in grads:
            want[("grad_cosine_neurons", "h1")] = _loop_cosine(grads["hidden.0.weight"])
        for layer, h in zip(feats.post, hs):
            c = h.detach().double().numpy() - h.detach().double().numpy().mean(axis=0)
            g = c.T @ c / len(c)
            want[("hidden_grad_norm", layer)] = float(h.grad.double().norm())
            want[("gram_diag", layer)] = np.diag(g).mean()
            want[("gram_offdiag", layer)] = (g.sum() - np.trace(g)) / (len(g) * (len(g) - 1))
        at_step = batched[batched.step == step]
        assert len(at_step) == len(want)
        for (name, layer), value in want.items():
            row = at_step[
                (at_step.observable == name) & (at_step.layer.isna() if layer is None else at_step.layer == layer)
            ]
            assert len(row) == 1 and np.isclose(row.value.iloc[0], value, rtol=1e-4, atol=1e-7), (name, layer)


def test_features_are_computed_once_per_chunk_and_only_for_families_that_use_them(monkeypatch):
    from featscope import observe

    bundle, data = _small_mlp_run(steps=20, every=5)
    sizes = []
    batched_forward = observe._batched_forward

    def counted(*args):
        forward = batched_forward(*args)
        return lambda params: (sizes.append(len(next(iter(params.values())))), forward(params))[1]

    monkeypatch.setattr(observe, "_batched_forward", counted)
    observe.observe_families("r", {"weights": {}}, bundle, data)
    assert sizes == [1]  # sizing the chunks only: weights read parameters, not features
    sizes.clear()
    observe.observe_families("r", {"nonlinearity": {}, "linreg": {}, "spectral": {"top": 3}}, bundle, data)
    assert sizes == [1, 5]  # one forward pass of the chunk's 5 checkpoints for three families


@pytest.mark.parametrize(
    "first", ["nonlinearity", "linreg"], ids=["subsets-picked-from-the-chunk", "subsets-evaluated-alone"]
)
def test_a_family_observes_only_the_checkpoints_its_own_schedule_names(first):
    from featscope import observe

    bundle, data = _small_mlp_run(steps=45, every=5)
    every = observe.observe_families("r", {"linreg": {}, "spectral": {"top": 3}, "nonlinearity": {}}, bundle, data)
    sparse_families = {
        "linreg": {"schedule": {"every": 20}},
        "spectral": {"top": 3, "schedule": {"every": 15}},
        "nonlinearity": {},
    }
    # The first family decides whether the chunk's features exist when the others pick theirs.
    sparse_families = {first: sparse_families[first], **sparse_families}
    sparse = observe.observe_families("r", sparse_families, bundle, data)
    assert sorted(set(sparse["linreg"].step)) == [0, 20, 40, 45]  # multiples of 20, and the ends
    assert sorted(set(sparse["spectral"].step)) == [0, 15, 30, 45]
    assert sparse["nonlinearity"].equals(every["nonlinearity"])
    for name in ("linreg", "spectral"):
        steps = set(sparse[name].step)
        want = every[name][every[name].step.isin(steps)]
        if name == "spectral":  # drift_prev compares with the previous observed checkpoint
            want = want[want.observable != "drift_prev"]
            got = sparse[name][sparse[name].observable != "drift_prev"]
        else:
            got = sparse[name]
        pd.testing.assert_frame_equal(
            got.reset_index(drop=True), want.reset_index(drop=True), check_exact=False, rtol=1e-9, atol=1e-12
        )


def test_pre_activations_picked_for_a_scheduled_family_match_every_checkpoint():
    # spectral evaluates the whole chunk; nonlinearity, on a schedule of its own, then reads
    # the pre-activations of its checkpoints, picked from the chunk's only when asked for.
    from featscope import observe

    bundle, data = _small_mlp_run(steps=45, every=5)
    every = observe.observe_families("r", {"nonlinearity": {}}, bundle, data)["nonlinearity"]
    sparse = observe.observe_families(
        "r", {"spectral": {"top": 3}, "nonlinearity": {"schedule": {"every": 10}}}, bundle, data
    )["nonlinearity"]
    assert sorted(set(sparse.step)) == [0, 10, 20, 30, 40, 45]
    want = every[every.step.isin(set(sparse.step))].reset_index(drop=True)
    pd.testing.assert_frame_equal(sparse, want)


def test_families_on_one_schedule_share_its_checkpoints_grams(monkeypatch):
    from featscope import observe

    bundle, data = _small_mlp_run(steps=45, every=5)
    formed = []
    real = observe._linreg.augmented_grams

    def counted(features):
        formed.append(tuple(features.shape))
        return real(features)

    monkeypatch.setattr(observe._linreg, "augmented_grams", counted)
    sparse = {"schedule": {"every": 15}}
    frames = observe.observe_families(
        "r", {"nonlinearity": {}, "linreg": sparse, "spectral": {"top": 3, **sparse}}, bundle, data
    )
    # h1 and h2 of the 4 scheduled checkpoints, once each: spectral reuses linreg's h2 Gram.
    assert len(formed) == 2 and all(shape[0] == 4 for shape in formed)
    assert sorted(set(frames["linreg"].step)) == sorted(set(frames["spectral"].step)) == [0, 15, 30, 45]


def _weights_one_checkpoint_at_a_time(snap, params, state):
    """The weights family's definitions applied checkpoint by checkpoint with the one-map
    functions (the family's code before it went batched): the twin of the batched family."""
    from featscope.models import layer_of_parameter

    rows = []
    names = [n for n, v in snap.params.items() if v.dim() >= 3]
    for i, step in enumerate(snap.steps):
        current = {n: snap.params[n][i].double() for n in names}
        init = state.setdefault("init", current)
        prev = state.get("prev", current)
        for name, w in current.items():
            layer = layer_of_parameter(name)
            norm_prev, norm_init = prev[name].norm(), init[name].norm()
            delta, dist = (w - prev[name]).norm(), (w - init[name]).norm()
            rows += [
                (int(step), obs, layer, None, float(v))
                for obs, v in {
                    "weight_norm": w.norm(),
                    "weight_delta_norm": delta,
                    "weight_delta_rel": delta / norm_prev if norm_prev > 0 else float("nan"),
                    "weight_init_distance": dist,
                    "weight_init_rel": dist / norm_init if norm_init > 0 else float("nan"),
                }.items()
            ]
        flat = torch.cat([w.flatten() for w in current.values()])
        if "prev_flat" in state and "prev_update" in state:
            rows.append(
                (int(step), "update_cosine", None, None, dyn.cosine(flat - state["prev_flat"], state["prev_update"]))
            )
        if "prev_flat" in state:
            state["prev_update"] = flat - state["prev_flat"]
        state["prev_flat"], state["prev"] = flat, current
        w1 = snap.params["hidden.0.weight"][i]
        rows += [
            (int(step), "feature_diversity", "h1", None, dyn.feature_diversity(w1)),
            (int(step), "weight_effective_rank", "h1", None, dyn.effective_rank(w1)),
        ]
        if hasattr(snap.model_type(), "input_weights"):
            purity, freq = dyn.fourier_purity(snap.model_at(i).input_weights().detach())
            rows += [(int(step), "fourier_purity", "h1", j, p) for j, p in enumerate(purity.tolist())]
            rows.append(
                (
                    int(step),
                    "fourier_frequencies",
                    "h1",
                    None,
                    dyn.distinct_of(purity, freq, params.get("min_purity", 0.5)),
                )
            )
    frame = pd.DataFrame(rows, columns=["step", "observable", "layer", "k", "value"])
    frame["k"] = frame["k"].astype("Int64")
    return frame


@_stacked_models(depth=2)
def test_weights_batched_over_checkpoints_match_one_checkpoint_at_a_time(model, task, loss, monkeypatch):
    """The batched weights family against its per-checkpoint twin, over chunks of 3 (state
    carried across chunks), with a dead neuron (a zero row of h1's weights)."""
    from featscope import observe
    from featscope.observables import FAMILIES, rows
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {**task, "seed": 0},
        "model": model,
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 20, "loss": loss},
        "schedule": {"every": 2},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    bundle["params"]["hidden.0.weight"][:, 0] = 0
    monkeypatch.setattr(observe, "MAX_CHUNK", 3)
    batched, twin, state_b, state_t = [], [], {}, {}
    for snap in observe.snapshots(bundle, data):
        batched.append(FAMILIES["weights"].compute(snap, {}, state_b))
        twin.append(_weights_one_checkpoint_at_a_time(snap, {}, state_t))
    got, want = rows.frame("r", batched), pandas_long_form("r", twin)
    assert len(got) == len(want) and set(got.observable) >= {"update_cosine", "feature_diversity"}
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-10, atol=1e-13)


def test_checkpoints_split_into_chunks_as_even_as_they_go(monkeypatch):
    from featscope import observe

    bundle, data = _small_mlp_run(steps=50, every=5)  # 11 checkpoints
    monkeypatch.setattr(observe, "MAX_CHUNK", 8)
    chunks = [snap.steps.tolist() for snap in observe.snapshots(bundle, data)]
    assert [len(c) for c in chunks] == [6, 5]  # not 8 + 3
    assert sum(chunks, []) == bundle["steps"].tolist()


@_stacked_models(depth=3)
def test_active_rates_of_the_pre_activation_pass_match_each_checkpoints_model(model, task, loss, monkeypatch):
    """The pass that forms only pre-activations, in blocks of checkpoints (here 3, with a
    remainder), gives the rates read off the chunk's features bit for bit, and those of
    each checkpoint's own model (its nn.Linear products) to within one sample's flip."""
    from featscope import observe
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {**task, "seed": 0},
        "model": model,
        "optim": {"name": "adam", "lr": 0.01},
        "train": {"steps": 30, "loss": loss},
        "schedule": {"every": 3},
        "seed": 0,
    }
    data = make_dataset(cfg["task"])
    bundle = train_one("r", cfg, data, progress=False).checkpoints
    x = torch.as_tensor(data["x_train"])
    x = x.float() if x.is_floating_point() else x.long()
    [snap] = list(observe.snapshots(bundle, data))
    per_checkpoint = len(x) * model["width"] * 4
    monkeypatch.setattr(observe, "PRE_ACTIVATION_BLOCK_BYTES", 3 * per_checkpoint)
    streamed = snap.active_rates()
    assert snap._evaluated is None  # no features formed for them
    from_features = {layer: (pre > 0).double().mean(dim=-2) for layer, pre in snap.features.pre.items()}
    assert list(streamed) == list(from_features) and len(snap.steps) == 11
    for layer in streamed:
        assert torch.equal(streamed[layer], from_features[layer]), layer
        assert torch.equal(snap.active_rates()[layer], from_features[layer])  # now read off the features
    for i in range(len(snap.steps)):
        with torch.no_grad():
            pre = snap.model_at(i).forward_features(x)[1].pre
        for layer, z in pre.items():
            assert (streamed[layer][i] - (z > 0).double().mean(dim=0)).abs().max() <= 1 / len(x) + 1e-12


def test_active_rates_take_checkpoints_a_selection_evaluated_from_its_features(monkeypatch):
    """With linreg on a sparser schedule, nonlinearity reads the rates of linreg's checkpoints
    off their features, and the pre-activation pass forms only the others."""
    from featscope import observe

    bundle, data = _small_mlp_run(steps=45, every=5)
    streamed = []
    stream = observe.stacked_pre_activations

    def counted(model_cfg, params, x, block):
        streamed.append(len(next(iter(params.values()))))
        return stream(model_cfg, params, x, block)

    monkeypatch.setattr(observe, "stacked_pre_activations", counted)
    alone = observe.observe_families("r", {"nonlinearity": {}}, bundle, data)["nonlinearity"]
    assert streamed == [10]
    streamed.clear()
    both = observe.observe_families("r", {"nonlinearity": {}, "linreg": {"schedule": {"every": 20}}}, bundle, data)
    assert streamed == [10 - 4]  # 0, 20, 40 and 45 from linreg's features
    pd.testing.assert_frame_equal(both["nonlinearity"], alone)
