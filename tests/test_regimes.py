import pandas as pd

from featscope.regimes import label, regime_table


def test_rules_in_order():
    assert label(0.0, 50.0, 10) == "coefficient"  # frozen features: whatever the dimension
    assert label(0.3, 12.0, 10) == "MF"
    assert label(0.3, 25.0, 10) == "EF"
    assert label(0.3, 25.0, 10, mf_factor=3.0) == "MF"
    assert label(0.005, 25.0, 10, coefficient_drift=0.001) == "EF"


def test_table_pivots_and_labels():
    rows = []
    for run, drift, dim in (("frozen", 0.0, 40.0), ("minimal", 0.4, 3.0), ("extended", 0.4, 30.0)):
        for step in (0, 10):
            rows += [
                (run, step, "drift_init", drift if step else 0.0),
                (run, step, "effective_dim_utility", dim),
                (run, step, "effective_dim", dim),
                (run, step, "d_lr", 0.5),
            ]
    table = regime_table(
        pd.DataFrame(rows, columns=["run", "step", "observable", "value"]), {"frozen": 2, "minimal": 2, "extended": 2}
    )
    last = table[table.step == 10].set_index("run").regime
    assert last.to_dict() == {"extended": "EF", "frozen": "coefficient", "minimal": "MF"}
    assert (table[table.step == 0].regime == "coefficient").all()


def test_non_finite_measures_get_no_label():
    """A diverging run's NaN drift was labelled 'coefficient' (features frozen): it is not."""
    assert label(float("nan"), 5.0, 10) is None
    assert label(0.3, float("inf"), 10) is None
    rows = [("ok", 10, "drift_init", 0.4), ("ok", 10, "effective_dim_utility", 3.0)]
    rows += [("bad", 10, "drift_init", float("nan")), ("bad", 10, "effective_dim_utility", 3.0)]
    table = regime_table(pd.DataFrame(rows, columns=["run", "step", "observable", "value"]), {"ok": 2, "bad": 2})
    regime = table.set_index("run").regime
    assert regime["ok"] == "MF" and pd.isna(regime["bad"])


def test_regime_map_draws_unlabelled_checkpoints_blank():
    from featscope.plots import regime_map

    runs = pd.DataFrame({"run": ["a", "b"], "grid_point": ["g", "g"]})
    regimes = pd.DataFrame({"run": ["a", "b", "a", "b"], "step": [0, 0, 5, 5], "regime": ["MF", "MF", None, None]})
    fig = regime_map(runs, None, regimes, "s")
    drawn = fig.axes[0].collections[0].get_array()
    assert drawn.count() == 1  # step 0 drawn (MF), step 5 masked
