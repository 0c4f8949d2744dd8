"""The modular-addition transformer: registration, a full-sequence twin, its named layers,
the Fourier input weights and the torch.func form that packing uses."""

import math

import numpy as np
import pytest
import torch

from featscope.observables.dynamics import fourier_purity
from featscope.registry import MODELS, RegistryError
from featscope.transformer import ModAddTransformer, transformer  # noqa: F401  (registers it)

P = 7


def pairs(p=P):
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return torch.as_tensor(np.stack([a.ravel(), b.ravel()], 1))


def build(**params):
    torch.manual_seed(0)
    return MODELS["transformer"].build(2, P, {"d_model": 16, "n_heads": 2, "d_mlp": 24, **params})


def full_sequence_twin(model, x):
    """Nanda et al.'s forward written out: every block on all three positions, causal
    attention per head, the unembedding read at the last position."""
    tokens = torch.cat([x, torch.full_like(x[:, :1], model.classes)], 1)
    h = model.embed.tok[tokens] + model.embed.pos
    for block in model.blocks:
        att = block.attn
        n, d = h.shape[0], h.shape[-1]
        q, k, v = (
            (h @ lin.weight.T).view(n, 3, att.n_heads, att.d_head).transpose(1, 2) for lin in (att.q, att.k, att.v)
        )
        scores = q @ k.transpose(-1, -2) / math.sqrt(att.d_head)
        scores = scores.masked_fill(torch.triu(torch.ones(3, 3, dtype=torch.bool), 1), float("-inf"))
        z = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, 3, d)
        h = h + z @ att.o.weight.T
        mlp = block.mlp
        h = h + torch.relu(h @ mlp.fc_in.weight.T + mlp.fc_in.bias) @ mlp.fc_out.weight.T + mlp.fc_out.bias
    return h[:, -1] @ model.unembed.weight.T


@pytest.mark.parametrize("n_layers", [1, 2])
def test_forward_equals_the_full_sequence_twin(n_layers):
    model = build(n_layers=n_layers)
    x = pairs()
    with torch.no_grad():
        torch.testing.assert_close(model(x), full_sequence_twin(model, x), rtol=1e-5, atol=1e-6)


def test_registered_with_readable_layers():
    spec = MODELS["transformer"]
    assert spec.readout == "unembed"
    assert spec.layer_map({}) == {
        "embed": "embed",
        "attn": "blocks.0.attn",
        "mlp": "blocks.0.mlp.act",
        "resid": "resid",
    }
    assert spec.layer_names({"n_layers": 2}) == ["embed", "attn1", "mlp1", "attn2", "mlp2", "resid"]
    assert spec.defaults == {"d_model": 128, "n_heads": 4, "d_mlp": 512, "n_layers": 1}
    with pytest.raises(RegistryError, match="takes no parameter 'width'"):
        spec.resolve({"width": 3})
    model = build()
    modules = dict(model.named_modules())
    for path in [*spec.layer_map({}).values(), spec.readout]:
        assert path in modules


def test_hooks_read_the_residual_stream_and_the_mlp():
    """The readout's input is the final residual stream (resid's output); the MLP's ReLU
    module gets the pre-activation and gives the post-activation."""
    model = build()
    x = pairs()
    seen = {}
    model.resid.register_forward_hook(lambda m, i, o: seen.__setitem__("resid", o))
    model.unembed.register_forward_hook(lambda m, i, o: seen.__setitem__("readout_in", i[0]))
    model.blocks[0].mlp.act.register_forward_hook(lambda m, i, o: seen.update(pre=i[0], post=o))
    with torch.no_grad():
        out = model(x)
    assert seen["resid"].shape == (P * P, 16) and seen["pre"].shape == (P * P, 24)
    assert torch.equal(seen["resid"], seen["readout_in"])
    torch.testing.assert_close(out, seen["resid"] @ model.unembed.weight.T)
    assert torch.equal(seen["post"], torch.relu(seen["pre"]))
    assert (seen["pre"] < 0).any()


def test_bad_input_is_named():
    model = build()
    with pytest.raises(ValueError, match=r"inputs must lie in \[0, 7\)"):
        model(torch.tensor([[0, 7]]))
    with pytest.raises(ValueError, match="integer pairs"):
        model(torch.zeros(3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="in_dim 2"):
        transformer(14, P)
    with pytest.raises(ValueError, match="multiple of n_heads"):
        transformer(2, P, d_model=10, n_heads=4)
    with pytest.raises(ValueError, match="n_layers must be 1 or 2"):
        transformer(2, P, n_layers=3)


def test_input_weights_are_the_embeddings_principal_functions():
    """(r, 1, p) with r = min(p, d_model); their Gram is the embedding's token Gram, and a
    rotation of the residual stream changes neither the output nor the Fourier purity."""
    model = build()
    w = model.input_weights()
    tok = model.embed.tok[:P].detach().double()
    assert w.shape == (P, 1, P)
    torch.testing.assert_close(w[:, 0].T @ w[:, 0], tok @ tok.T)
    purity, _ = fourier_purity(w)
    rot, _ = torch.linalg.qr(torch.randn(16, 16))
    rotated = build()
    with torch.no_grad():
        rotated.embed.tok.copy_(model.embed.tok @ rot)
        rotated.embed.pos.copy_(model.embed.pos @ rot)
        att, mlp = rotated.blocks[0].attn, rotated.blocks[0].mlp
        for name in ("q", "k", "v"):
            getattr(att, name).weight.copy_(getattr(model.blocks[0].attn, name).weight @ rot)
        att.o.weight.copy_(rot.T @ model.blocks[0].attn.o.weight)
        mlp.fc_in.weight.copy_(model.blocks[0].mlp.fc_in.weight @ rot)
        mlp.fc_out.weight.copy_(rot.T @ model.blocks[0].mlp.fc_out.weight)
        mlp.fc_out.bias.copy_(rot.T @ model.blocks[0].mlp.fc_out.bias)
        rotated.unembed.weight.copy_(model.unembed.weight @ rot)
        torch.testing.assert_close(rotated(pairs()), model(pairs()), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fourier_purity(rotated.input_weights())[0], purity, rtol=1e-6, atol=1e-8)

    # The embedding's coordinates would not do: their purities move with the rotation.
    def coordinates(m):
        return fourier_purity(m.embed.tok[:P].detach().T.unsqueeze(1))[0]

    assert not torch.allclose(coordinates(rotated), coordinates(model), atol=1e-3)


def test_a_fourier_embedding_is_pure():
    """Tokens embedded as cos/sin of two frequencies: the leading principal functions are
    each one frequency (purity 1), and exactly those two frequencies appear."""
    model = build()
    t = torch.arange(P, dtype=torch.float64)
    basis = torch.stack(
        [
            torch.cos(2 * math.pi * t / P),
            torch.sin(2 * math.pi * t / P),
            0.5 * torch.cos(6 * math.pi * t / P),
            0.5 * torch.sin(6 * math.pi * t / P),
        ],
        1,
    )
    rot, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    with torch.no_grad():
        model.embed.tok[:P] = (torch.cat([basis, torch.zeros(P, 12, dtype=torch.float64)], 1) @ rot).float()
    purity, freq = fourier_purity(model.input_weights())
    torch.testing.assert_close(purity[:4], torch.ones(4, dtype=torch.float64), rtol=0, atol=1e-6)
    assert sorted(freq[:4].tolist()) == [1, 1, 3, 3]


def test_packs_through_torch_func():
    """Stacked parameters of three models, vmapped through functional_call and grad: the
    outputs and gradients of each model alone (what the torch.func packing needs)."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(transformer(2, P, d_model=16, n_heads=2, d_mlp=24))
    params, buffers = stack_module_state(models)
    base = models[0]
    x, y = pairs(), pairs().sum(1) % P

    def loss(p, b):
        return torch.nn.functional.cross_entropy(functional_call(base, (p, b), (x,)), y)

    out = vmap(lambda p, b: functional_call(base, (p, b), (x,)))(params, buffers)
    grads = vmap(grad(loss))(params, buffers)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x), rtol=1e-5, atol=1e-6)
        m.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        for name, p in m.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-4, atol=1e-6)


def test_a_pack_with_a_split_per_seed_trains_through_vmap(tmp_path):
    """Each run on its own split (task.split: per_seed) feeds vmap batched inputs: the pack
    trains through torch.func, not run by run (the input check once made vmap give up),
    and each run's result is the run's alone to float32 rounding."""
    from featscope.packed import train_packed
    from featscope.tasks import make_dataset
    from featscope.training import train_one

    cfg = {
        "task": {"name": "modadd", "M": P, "train_fraction": 0.5, "split": "per_seed"},
        "model": {"name": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 24, "n_layers": 1},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 1.0, "betas": [0.9, 0.98]},
        "train": {"steps": 20, "loss": "cross_entropy", "eval_every": 5},
        "schedule": {"every": 10},
    }
    runs = [(f"s{seed}", {**cfg, "seed": seed, "task": {**cfg["task"], "seed": seed}}) for seed in (0, 1)]
    datasets = [make_dataset(c["task"]) for _, c in runs]
    assert not np.array_equal(datasets[0]["x_train"], datasets[1]["x_train"])
    with open(tmp_path / "log", "w") as log:
        got = train_packed(runs, datasets, log_file=log)
    assert "one by one" not in (tmp_path / "log").read_text()
    for (run_id, c), data, result in zip(runs, datasets, got):
        assert result.info["packed"] == 2
        alone = train_one(run_id, c, data, progress=False)
        for name, stack in alone.checkpoints["params"].items():
            torch.testing.assert_close(result.checkpoints["params"][name], stack, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(result.metrics.loss, alone.metrics.loss, rtol=1e-4, atol=1e-5)


def test_memorises_a_small_table():
    """Trained with AdamW on every pair of Z_5, it fits the table (a learning, not a shape,
    check: the weights start at chance)."""
    torch.manual_seed(0)
    model = transformer(2, 5, d_model=32, n_heads=4, d_mlp=64)
    x = pairs(5)
    y = x.sum(1) % 5
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1, betas=(0.9, 0.98))
    assert (model(x).argmax(1) == y).float().mean() < 0.5
    for _ in range(200):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert (model(x).argmax(1) == y).all()
