"""Observable families, registered with `featscope.register_family` (see `featscope.registry`).

A family function maps a `Snapshot` (stacked checkpoints and their features
on the evaluation set) and its parameters to long-form rows
(step, observable, layer, k, value), as `rows.Rows`: blocks of one observable
and layer each, joined into one table per run (`rows.table`; `rows.frame` for
pandas). Bump a family's ``version`` whenever its numbers change: the workflow
re-runs exactly that family's observe jobs.

The registry itself imports no torch: the workflow reads it while Snakemake starts.
"""

from __future__ import annotations

from ..registry import COMMON_PARAMS, FAMILIES, register_family

__all__ = ["COMMON_PARAMS", "FAMILIES", "applicability", "parameters"]

_BUILT_IN = "featscope.observables.families"
register_family(
    "nonlinearity",
    version=1,
    reads="active rates",
    description="active rate and nonlinear/dead/linear neuron counts",
    observables={
        "active_rate": "per neuron (k) of each hidden layer: share of samples with pre-activation > 0",
        "nonlinear_neurons": "per hidden layer: neurons with 0 < active rate < 1",
        "dead_neurons": "per hidden layer: neurons with active rate 0",
        "linear_neurons": "per hidden layer: neurons with active rate 1 (always on)",
    },
    fn=f"{_BUILT_IN}:nonlinearity",
)
register_family(
    "linreg",
    version=2,
    applies_to={"regression"},
    description="least-squares baselines of y on each layer's features",
    observables={
        "linreg_loss": "per layer (x, h1, h2, ...): MSE of the least-squares fit of y on [F, 1], in float64 "
        "by a rank-revealing (pivoted) Cholesky factorisation that drops zero and collinear columns, "
        "plus one refinement step",
    },
    fn=f"{_BUILT_IN}:linreg",
)
register_family(
    "spectral",
    version=1,
    params={"layer", "landmarks", "top"},
    description="kernel eigen-measures of the penultimate features (Nam et al.)",
    observables={
        "eigenvalue": "per eigen index k (from 1): ρ_k of Σ = ΦᵀΦ/n, descending",
        "quality": "per k: Q*_k = Σ_c⟨e_k, f*_c⟩² / Σ_c‖f*_c‖², f* the target (one-hot for classes)",
        "utility": "per k: Q̂_k, the same with the network's output in place of the target",
        "cum_quality": "per k: Π*(k), the cumulative sum of quality (non-decreasing, ≤ 1)",
        "cum_utility": "per k: Π̂(k), the cumulative sum of utility (non-decreasing, ≤ 1)",
        "effective_dim": "exp(entropy of ρ/Σρ)",
        "effective_dim_quality": "exp(entropy of Q*/ΣQ*)",
        "effective_dim_utility": "exp(entropy of Q̂/ΣQ̂)",
        "d_lr": "1 − CKA(ΦΦᵀ, a₁11ᵀ/n + a₂P_f̂), P_f̂ the projection onto the outputs' span",
        "drift_init": "1 − mean squared overlap of the top-`top` eigenfunction subspaces, against init",
        "drift_prev": "the same against the previous observed checkpoint",
    },
    fn=f"{_BUILT_IN}:spectral",
)
register_family(
    "weights",
    version=1,
    params={"min_purity"},
    reads="parameters",
    description="weight norms, changes, update cosine, diversity, rank, Fourier purity (Tian)",
    observables={
        "weight_norm": "per weight matrix (h1, out, embed, ...): its Frobenius norm",
        "weight_delta_norm": "per weight matrix: ‖W_t − W_prev‖ since the previous observed checkpoint",
        "weight_delta_rel": "per weight matrix: ‖W_t − W_prev‖ ÷ ‖W_prev‖",
        "weight_init_distance": "per weight matrix: ‖W_t − W_0‖",
        "weight_init_rel": "per weight matrix: ‖W_t − W_0‖ ÷ ‖W_0‖",
        "update_cosine": "cosine between consecutive checkpoint-to-checkpoint parameter updates (no layer)",
        "feature_diversity": "h1: 1 − mean off-diagonal |cos| between neurons' incoming weight vectors",
        "weight_effective_rank": "h1: exp(entropy of the normalised singular values)",
        "fourier_purity": "h1, per neuron (k), modular models: share of its input-weight energy (over a and b) "
        "in its top non-constant frequency",
        "fourier_frequencies": "h1, modular models: distinct dominant frequencies among neurons with "
        "purity ≥ `min_purity` (0.5)",
    },
    fn=f"{_BUILT_IN}:weights",
)
register_family(
    "gradients",
    version=1,
    reads="parameters",  # with its own forward and backward pass
    description="full-batch gradient norms and cosines, ‖G_F‖, Gram statistics (Tian)",
    observables={
        "grad_norm": "full-batch gradient norm of the loss, weight decay excluded (no layer: all "
        "parameters; per layer: that layer's)",
        "grad_cosine_neurons": "h1: mean pairwise cosine of the hidden neurons' gradient rows",
        "hidden_grad_norm": "per hidden layer: ‖G_F‖, the gradient reaching the hidden activations",
        "gram_diag": "per hidden layer: mean diagonal entry of F̃ᵀF̃/n, F̃ the sample-centred activations",
        "gram_offdiag": "per hidden layer: mean off-diagonal entry of F̃ᵀF̃/n",
    },
    fn=f"{_BUILT_IN}:gradients",
)


def applicability() -> dict[str, set]:
    """Family name -> the task kinds it applies to."""
    return {name: set(f.applies_to) for name, f in FAMILIES.items()}


def parameters() -> dict[str, set]:
    """Family name -> the parameters it takes."""
    return {name: set(COMMON_PARAMS | f.params) for name, f in FAMILIES.items()}
