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
