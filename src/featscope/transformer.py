"""A small transformer for modular addition, as in the grokking literature.

The architecture is Nanda et al.'s one-layer model ("Progress measures for grokking via
mechanistic interpretability", 2023), optionally with a second block: the input pair
(a, b) becomes the token sequence ``a, b, =`` (``=`` is token ``classes``), learned token
and positional embeddings are added, each block adds multi-head causal attention and a
ReLU MLP to the residual stream (no LayerNorm), and the unembedding reads the residual
stream at the last position. It registers through `featscope.register_model`, the same
call a plugin makes.

Only the last position reaches the output, so the last block computes its attention
query, its MLP and the residual stream at that position alone: the output is the same as
computing every position (tested), and the last block's layers are plain (n, width)
feature maps. Earlier blocks (``n_layers`` = 2) run on all three positions; their layers
are (n, 3, width).

Layers (module paths for forward hooks; the input of an activation module is its
pre-activation, its output the post-activation):

* ``embed``: token + positional embedding of the three positions, (n, 3, d_model);
* ``attn`` / ``mlp`` (``attn1``, ``mlp1``, ``attn2``, ``mlp2`` with two blocks): the
  attention's contribution to the residual stream, and the MLP's ReLU;
* ``resid``: the residual stream that feeds the unembedding, (n, d_model).

The readout is ``unembed``, whose input is ``resid``: a family that reads the penultimate
features (``spectral``) sees the final residual stream, not the MLP hidden layer.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch._C._functorch import is_batchedtensor

from .registry import register_model


class Embed(nn.Module):
    """Token embedding of ``classes + 1`` tokens (the numbers and ``=``) plus a learned
    embedding of the three positions."""

    def __init__(self, classes: int, d_model: int):
        super().__init__()
        self.classes = classes
        self.tok = nn.Parameter(torch.randn(classes + 1, d_model) / math.sqrt(d_model))
        self.pos = nn.Parameter(torch.randn(3, d_model) / math.sqrt(d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.tok[tokens] + self.pos


class Attention(nn.Module):
    """Multi-head causal self-attention without biases; returns what it adds to the residual
    stream at the query positions (the last ``queries`` positions)."""

    def __init__(self, d_model: int, n_heads: int, queries: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_heads ({n_heads})")
        self.n_heads, self.d_head, self.queries = n_heads, d_model // n_heads, queries
        self.q, self.k, self.v, self.o = (nn.Linear(d_model, d_model, bias=False) for _ in range(4))
        for lin in (self.q, self.k, self.v, self.o):
            nn.init.normal_(lin.weight, std=1 / math.sqrt(d_model))
        # Query i (of the last `queries` positions of 3) may see keys 0 .. its own position.
        pos_q = torch.arange(3 - queries, 3).unsqueeze(1)
        self.register_buffer("mask", torch.arange(3).unsqueeze(0) > pos_q, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, d = x.shape[0], x.shape[-1]
        heads = (n, -1, self.n_heads, self.d_head)
        # The projections take 2-D inputs: under vmap (a torch.func pack) a Linear on (n, t, d)
        # becomes one small matrix product per sample, several times slower.
        q = self.q(x[:, 3 - self.queries :].reshape(-1, d)).view(heads).transpose(1, 2)  # (n, h, queries, d_head)
        k, v = (lin(x.reshape(-1, d)).view(heads).transpose(1, 2) for lin in (self.k, self.v))  # (n, h, 3, d_head)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(self.d_head)).masked_fill(self.mask, float("-inf"))
        z = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n * self.queries, d)
        out = self.o(z)
        return out if self.queries == 1 else out.view(n, self.queries, d)  # one query: a plain (n, d_model) map


class MLP(nn.Module):
    """Linear, ReLU (the module ``act``, where the layer is read), Linear."""

    def __init__(self, d_model: int, d_mlp: int):
        super().__init__()
        self.fc_in, self.act, self.fc_out = nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model)
        nn.init.normal_(self.fc_in.weight, std=1 / math.sqrt(d_model))
        nn.init.normal_(self.fc_out.weight, std=1 / math.sqrt(d_mlp))
        nn.init.zeros_(self.fc_in.bias)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return self.fc_out(self.act(self.fc_in(x)))
        # (n, 3, d): 2-D products (see Attention.forward), the activation read as (n, 3, d_mlp)
        hidden = self.act(self.fc_in(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1))
        return self.fc_out(hidden.reshape(-1, hidden.shape[-1])).view(x.shape)


class Block(nn.Module):
    """Residual attention then residual MLP, on the last ``queries`` positions (the last
    position alone, as (n, d_model), when ``queries`` is 1)."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, queries: int):
        super().__init__()
        self.queries = queries
        self.attn = Attention(d_model, n_heads, queries)
        self.mlp = MLP(d_model, d_mlp)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x[:, -1] if self.queries == 1 else x) + self.attn(x)
        return h + self.mlp(h)


class ModAddTransformer(nn.Module):
    """Inputs (n, 2) integer pairs in [0, classes); outputs (n, classes) logits."""

    def __init__(self, classes: int, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, n_layers: int = 1):
        super().__init__()
        if n_layers not in (1, 2):
            raise ValueError(f"n_layers must be 1 or 2, not {n_layers}")
        self.classes = classes
        self.embed = Embed(classes, d_model)
        # The last block computes the last position only: nothing else reaches the output.
        self.blocks = nn.ModuleList(
            Block(d_model, n_heads, d_mlp, 3 if i < n_layers - 1 else 1) for i in range(n_layers)
        )
        self.resid = nn.Identity()  # the final residual stream, named so that a hook can read it
        self.unembed = nn.Linear(d_model, classes, bias=False)
        nn.init.normal_(self.unembed.weight, std=1 / math.sqrt(classes))

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The sequences ``a, b, =`` for integer pairs ``x`` (n, 2); values outside
        [0, classes) are refused."""
        x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"the transformer takes integer pairs (n, 2), not shape {tuple(x.shape)}")
        x = x.long()
        # Checked on plain tensors only: under vmap (a pack's own data per run) a value
        # test is data-dependent control flow, which vmap cannot batch.
        if not is_batchedtensor(x) and x.numel() and (x.min() < 0 or x.max() >= self.classes):
            raise ValueError(f"inputs must lie in [0, {self.classes}); got [{int(x.min())}, {int(x.max())}]")
        equals = torch.full_like(x[:, :1], self.classes)
        return torch.cat([x, equals], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.tokens(x))
        for block in self.blocks:
            h = block(h)
        return self.unembed(self.resid(h))  # the last block returns the last position

    def input_weights(self) -> torch.Tensor:
        """The token embedding of the numbers 0..classes−1 as (r, 1, classes) functions on
        Z_classes, for the Fourier measures: its principal components σ_k·u_k (the SVD of
        the classes × d_model embedding, r = min(classes, d_model)).

        Principal components, not the embedding's coordinates: the residual stream has no
        preferred basis (rotating it, with the weights that read and write it, changes no
        output), and a Fourier measure must not change either. A grokked embedding is
        sparse in frequency (Nanda et al.), so its leading components each carry one
        frequency; components of one frequency (its sine and cosine) share it whatever
        rotation the SVD picks between them."""
        u, s, _ = torch.linalg.svd(self.embed.tok[: self.classes].detach().double(), full_matrices=False)
        return (u * s).T.unsqueeze(1)


def _layers(params: dict) -> dict[str, str]:
    n = params["n_layers"]
    layers = {"embed": "embed"}
    for i in range(n):
        suffix = "" if n == 1 else str(i + 1)
        layers[f"attn{suffix}"] = f"blocks.{i}.attn"
        layers[f"mlp{suffix}"] = f"blocks.{i}.mlp.act"
    layers["resid"] = "resid"
    return layers


@register_model("transformer", layers=_layers, readout="unembed")
def transformer(
    in_dim: int, out_dim: int, d_model: int = 128, n_heads: int = 4, d_mlp: int = 512, n_layers: int = 1
) -> ModAddTransformer:
    """A 1–2 layer transformer for (a + b) mod M (Nanda et al.'s model): inputs are integer
    pairs, ``out_dim`` = M classes; ``in_dim`` is the pair's width (2) and is checked."""
    if in_dim != 2:
        raise ValueError(f"the transformer reads integer pairs (in_dim 2), not in_dim {in_dim}")
    return ModAddTransformer(out_dim, d_model, n_heads, d_mlp, n_layers)
