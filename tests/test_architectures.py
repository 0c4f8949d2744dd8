"""Built-in architectures: one registered object each, defaults in one place (the factory),
the config schema agreeing with it, built the same through the workflow and the library."""

import copy
import pathlib
import subprocess
import sys

import pytest
import torch
import yaml
from snakemake.utils import validate

import featscope
from featscope.architectures import model_spec
from featscope.config import model_layer_names
from featscope.models import MLP, OneHotNet, build_model
from featscope.registry import COMMON_MODEL_PARAMS, MODELS, RegistryError

REPO = pathlib.Path(__file__).parent.parent
SCHEMA_PATH = REPO / "workflow" / "schemas" / "config.schema.yaml"
BUILT_IN = ["mlp", "modnet", "onehot", "cnn", "vgg16", "resnet18", "transformer"]


def _schema_branch(name):
    """The `then` block of the schema's model block that applies to `name`."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    branches = [
        b["then"]
        for b in schema["$defs"]["model"]["allOf"]
        if b["if"]["properties"]["name"].get("const") == name or name in b["if"]["properties"]["name"].get("enum", [])
    ]
    assert len(branches) == 1, name
    return branches[0]


@pytest.mark.parametrize("name", BUILT_IN)
def test_schema_model_block_agrees_with_the_factory(name):
    spec = model_spec(name)
    branch = _schema_branch(name)
    common = {k: branch["properties"].get(k) for k in COMMON_MODEL_PARAMS}  # init, init_scale: every model's
    assert common == {k: {"$ref": f"#/$defs/{k}"} for k in COMMON_MODEL_PARAMS}
    props = {k: v for k, v in branch["properties"].items() if k != "name" and k not in COMMON_MODEL_PARAMS}
    assert sorted(props) == sorted(spec.parameters)
    assert {k: v["default"] for k, v in props.items()} == spec.defaults
    assert branch["additionalProperties"] is False


def test_schema_names_every_built_in_model():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    assert schema["$defs"]["model"]["properties"]["name"]["enum"] == BUILT_IN
    assert set(BUILT_IN) <= set(MODELS)


def _workflow_model_block(block):
    """The model block as the workflow sees it: schema defaults filled by Snakemake's validate."""
    config = {
        "studies": {
            "s": {
                "task": {"name": "modadd", "M": 7, "train_fraction": 0.5},
                "model": copy.deepcopy(block),
                "optim": {"name": "adam", "lr": 0.01},
                "train": {"steps": 2, "loss": "cross_entropy"},
                "seeds": [0],
            }
        }
    }
    validate(config, str(SCHEMA_PATH), set_default=True)
    return config["studies"]["s"]["model"]


def test_onehot_is_the_same_net_through_the_workflow_and_the_library():
    filled = _workflow_model_block({"name": "onehot", "width": 8})
    assert filled == {"name": "onehot", "width": 8, "activation": "square", "bias": False}
    torch.manual_seed(0)
    through_workflow = build_model(filled, 2, 7)
    torch.manual_seed(0)
    through_library = featscope.build_model({"name": "onehot", "width": 8}, 2, 7)
    torch.manual_seed(0)
    direct = OneHotNet(7, 8)  # the class's own defaults: square, no biases
    for net in (through_workflow, through_library):
        assert net.activation == "square" and net.hidden[0].bias is None and net.readout.bias is None
        assert net.state_dict().keys() == direct.state_dict().keys()
        for k, v in direct.state_dict().items():
            assert torch.equal(net.state_dict()[k], v), k
    x = torch.tensor([[1, 2], [3, 6]])
    assert torch.equal(through_workflow(x), direct(x))
    assert torch.equal(through_workflow(x), torch.square(direct.hidden[0](direct.encode(x))) @ direct.readout.weight.T)


@pytest.mark.parametrize("name", BUILT_IN)
def test_workflow_fills_exactly_the_factory_defaults(name):
    filled = _workflow_model_block({"name": name})
    assert filled == {"name": name, **model_spec(name).defaults}


def test_an_unknown_parameter_is_refused_by_name():
    with pytest.raises(RegistryError, match="takes no parameter 'depth'"):
        build_model({"name": "modnet", "width": 4, "depth": 3}, 2, 5)
    with pytest.raises(RegistryError, match="unknown model 'nosuchnet'"):
        build_model({"name": "nosuchnet"}, 2, 5)


def test_layer_names_come_from_the_registry_without_torch():
    code = (
        "import sys, featscope.config as c;"
        "print(c.model_layer_names({'name': 'mlp', 'depth': 3}), c.model_layer_names({'name': 'onehot'}),"
        "c.model_layer_names({'name': 'mlp'}), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['h1', 'h2', 'h3'] ['h1'] ['h1', 'h2'] False"
    assert model_layer_names({"name": "resnet18"}) == ["h1"]


def test_layer_names_match_the_built_models():
    for block, in_dim in (({"name": "mlp", "depth": 3, "width": 5}, 4), ({"name": "modnet", "width": 5}, 2)):
        model = build_model(block, in_dim, 3)
        x = torch.randn(6, 4) if block["name"] == "mlp" else torch.randint(0, 3, (6, 2))
        assert list(model.forward_features(x)[1].post) == model_layer_names(block)


def test_gelu_mlp_builds_and_runs_and_unknown_activations_are_refused():
    model = MLP(3, 2, width=4, depth=2, activation="gelu")
    x = torch.randn(5, 3)
    out, feats = model.forward_features(x)
    assert torch.equal(feats.post["h1"], torch.nn.functional.gelu(feats.pre["h1"]))
    assert torch.equal(out, model(x))
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLP(3, 2, width=4, depth=2, activation="swish")


@pytest.mark.workflow
def test_gelu_mlp_trains_packed_through_torch_func_and_is_observed_by_the_workflow(tmp_path, repo):
    """`activation: gelu` validates, trains in a pack through torch.func (one line in the
    job log says so) and its observables are written on the model's named layers."""
    import pandas as pd
    from test_workflow import snakemake, write_config
    from tiny import sin2_study

    study = sin2_study(observables={"linreg": {}, "spectral": {"top": 3}, "weights": {}}, analyses=[])
    study["model"] = {"name": "mlp", "width": 8, "depth": 2, "activation": "gelu"}
    write_config(tmp_path, {"studies": {"gelu": study}})
    done = snakemake(tmp_path, repo)
    assert done.returncode == 0, done.stderr[-3000:]
    logs = "".join(p.read_text() for p in (tmp_path / "results").rglob("*.log"))
    assert "model 'mlp' has no stacked form here: packing through torch.func" in logs
    runs = pd.read_parquet(tmp_path / "results" / "gelu" / "runs.parquet")
    assert list(runs.packed) == [2, 2] and list(runs.status) == ["ok", "ok"]
    obs = tmp_path / "results" / "gelu" / "observables"
    layers = {f: set(pd.read_parquet(obs / f"family={f}").layer.dropna()) for f in ("linreg", "spectral", "weights")}
    assert layers == {"linreg": {"x", "h1", "h2"}, "spectral": {"h2"}, "weights": {"h1", "h2", "out"}}
