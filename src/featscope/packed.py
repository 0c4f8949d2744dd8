"""Packed training: runs that share shapes trained in one process, with batched
parameters (stacked weights in batched matrix products, `stacked`).

Each run keeps its own parameters, optimiser state (Adam, AdamW and SGD are elementwise, so
one optimiser over the stacked tensors is S independent ones), data order, metrics rows,
divergence and checkpoints, in exactly the format of `train_one`. Results match `train_one`
to float32 rounding: batched matrix products sum in another order, and the backward is
written out (`stacked.TrainingPass`; tests/test_packed.py holds the tolerance).
What packs: models without buffers (no batch norm) whose runs differ
only in their seed and their optimiser's values (learning rate, weight decay, momentum,
warm-up length; see `batched_optim`); `pack_key` says which runs can share a pack.
A model without a stacked form (or with an activation the stacked form has no derivative
for) packs through ``torch.func``: ``vmap`` over ``functional_call`` of one of its modules,
autograd for the backward (`FuncEngine`); the job log says so in one line. Both are
engines of the one training loop (`featscope.loop`).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, stack_module_state, vmap

from .loop import RunResult, Setup, _Spill, prepare, resolve_device, train  # noqa: F401 (_Spill: tests patch it here)
from .models import build_model
from .packing import VALUE_KEYS, engine, pack_key, why_unpacked
from .stacked import TrainingPass, stacked_forward
from .training import train_one


def _check_packable(configs: list[dict]) -> None:
    for c in configs:
        if why_unpacked(c):
            raise ValueError(f"cannot pack: {why_unpacked(c)}")
    keys = {pack_key(c) for c in configs}
    if len(keys) > 1:
        raise ValueError(f"packed runs must differ only in their seed and optimiser values ({', '.join(VALUE_KEYS)})")


class StackedEngine:
    """The stacked engine (see `featscope.loop`): the S runs' parameters stacked, (S, ...),
    trained through batched products with the backward written out
    (`stacked.TrainingPass`) and the loss's written-out gradient."""

    name = "stacked"

    def __init__(self, setup: Setup):
        models = []
        for c in setup.configs:  # the same initialisation as train_one, seed by seed
            torch.manual_seed(c["seed"])
            models.append(build_model(c["model"], setup.in_dim, setup.out_dim).to(setup.device))
        self.params, _ = stack_module_state(models)
        self.runs = len(models)
        self.loss = setup.loss
        self.model_cfg = setup.configs[0]["model"]
        self.module = models[0]
        if setup.configs[0]["optim"].get("train", "all") == "readout":  # frozen features
            from .architectures import model_spec

            readout = model_spec(self.model_cfg["name"]).readout + "."
            for name, p in self.params.items():
                p.requires_grad_(name.startswith(readout))

    def shared(self, x):
        """Outputs (S, n, out) on inputs all runs share."""
        return stacked_forward(self.model_cfg, self.params, x, shared=True)

    def own(self, xs):
        """Outputs (S, n, out) on one batch per run, xs (S, n, ...)."""
        return stacked_forward(self.model_cfg, self.params, xs, shared=False)

    def outputs(self, x, shared: bool):
        with torch.no_grad():
            return self.shared(x) if shared else self.own(x)

    def training_pass(self, x, shared: bool) -> TrainingPass:
        """A training step's forward, on inputs all runs share or one batch per run."""
        return TrainingPass(self.model_cfg, self.params, x, shared)

    def train_step(self, x, y, shared: bool):
        forward = self.training_pass(x, shared)
        losses, grad_out = self.loss.value_and_gradient(forward.output, y)
        return _WrittenStep(forward, losses, grad_out)

    def trainable(self):
        return [p for p in self.params.values() if p.requires_grad]

    def checkpoint(self) -> dict:
        return self.params

    def finite(self) -> torch.Tensor:
        ok = [torch.isfinite(p.detach()).flatten(1).all(dim=1) for p in self.params.values()]
        return torch.stack(ok).all(dim=0)

    def state_dict(self) -> dict:
        return {k: v.detach() for k, v in self.params.items()}

    def load_state_dict(self, saved: dict) -> None:
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(saved[k])


class _WrittenStep:
    """A training step whose loss gradient is written out: the pass's ``backward`` takes it."""

    def __init__(self, forward, losses, grad_out):
        self.forward, self.output, self.losses, self.grad_out = forward, forward.output, losses, grad_out

    def backward(self, diverged: list[int]) -> None:
        if diverged:
            self.grad_out[diverged] = 0.0
        self.forward.backward(self.grad_out)


class FuncEngine(StackedEngine):
    """A pack of a model without a stacked form: ``vmap`` over ``functional_call`` of one of
    the pack's modules, each run's slice of the stacked parameters in turn; the backward is
    autograd's through the vmapped forward (each run's loss reaches only its own slice)."""

    name = "torch.func"

    def _call(self, params, x):
        return functional_call(self.module, params, (x,))

    def shared(self, x):
        return vmap(self._call, in_dims=(0, None))(self.params, x)

    def own(self, xs):
        return vmap(self._call, in_dims=(0, 0))(self.params, xs)

    def training_pass(self, x, shared: bool):
        with torch.enable_grad():
            return _AutogradPass(self.shared(x) if shared else self.own(x))


def _vmaps(pack: FuncEngine, x: torch.Tensor, log_file) -> bool:
    """Whether vmap can batch the model's forward (a model that, say, branches on a value
    it reads with ``.item()`` cannot); if not, the log says so and the runs train one by one."""
    try:
        with torch.no_grad():
            pack.shared(x[:2])
            pack.own(x[:2].expand(pack.runs, *x[:2].shape))
    except Exception as err:  # noqa: BLE001  (any failure of vmap means: train run by run)
        reason = (str(err).splitlines() or [""])[0][:200]
        print(
            f"vmap cannot batch this model ({type(err).__name__}: {reason}): its runs train one by one", file=log_file
        )
        return False
    return True


class _AutogradPass:
    """`stacked.TrainingPass`'s interface over an autograd graph: ``output`` (S, n, out),
    detached (the losses' gradients are written out), and ``backward(grad_output)``."""

    def __init__(self, output: torch.Tensor):
        self._output, self.output = output, output.detach()

    def backward(self, grad_output: torch.Tensor) -> None:
        self._output.backward(grad_output)


def train_packed(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = False,
    log_file=None,
    resume_path=None,
    resume_every: float = 60.0,
) -> list[RunResult]:
    """Train runs that share a `pack_key` together; one RunResult per run, as
    `train_one` would give. With `resume_path`, the pack's state is saved there every
    `resume_every` seconds and a restarted pack resumes from it."""
    return list(iter_train_packed(runs, data, device, progress, log_file, resume_path, resume_every))


def iter_train_packed(
    runs: list[tuple[str, dict]],
    data: dict,
    device="cpu",
    progress: bool = False,
    log_file=None,
    resume_path=None,
    resume_every: float = 60.0,
):
    """`train_packed`, yielding the RunResults one at a time once the pack has trained, so
    that only one run's checkpoints are in memory at once (the others wait on disk: beside
    `resume_path`, else in a temporary directory)."""
    configs = [cfg for _, cfg in runs]
    _check_packable(configs)
    setup = prepare(runs, data, device)
    model = configs[0]["model"]
    packs_by = engine(model)
    if log_file is not None and packs_by != "stacked":
        print(f"model '{model['name']}' has no stacked form here: packing through {packs_by}", file=log_file)
    pack = (StackedEngine if packs_by == "stacked" else FuncEngine)(setup)
    if packs_by != "stacked" and not _vmaps(pack, setup.x_run, log_file):
        for i, (run_id, c) in enumerate(runs):
            yield train_one(run_id, c, data[i] if setup.own_data else data, setup.device, progress, log_file)
        return
    yield from train(pack, setup, f"pack of {len(runs)}", progress, log_file, resume_path, resume_every)


def train_alone_packed(run_id: str, cfg: dict, data: dict, **kwargs) -> RunResult:
    """One run through the packed path, bitwise equal to its result in any pack of two or
    more (each run's slice of a batched product is computed alike). On one thread (the
    workflow's default) a pack of one does that. On more, MKL splits a lone product's long
    inner dimension across threads, which rounds differently from the same product in a
    batch (measured: the first layer's weight gradient), so the run trains beside a copy;
    likewise on a GPU, where it has not been measured."""
    device = resolve_device(kwargs.get("device", "cpu"))
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return train_packed([(run_id, cfg)], data, **kwargs)[0]
    return train_packed([(run_id, cfg), (f"{run_id}~copy", cfg)], data, **kwargs)[0]
