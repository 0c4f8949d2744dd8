import numpy as np
import pandas as pd
import pytest

from featscope.stages import critical_fraction, fit_m_log_m, grokking_table, scaling_table, stage, stage_table


def test_stage_rules_in_order():
    assert stage(0.3, 1e-5, 1.0) == "lazy"
    assert stage(0.3, 1e-2, 1.0) == "independent"
    assert stage(0.97, 1e-5, 1.0) == "interactive"
    assert stage(0.97, 1e-5, 1e-3) == "converged"
    assert stage(0.3, 1e-2, 1.0, lazy_rate=0.1) == "lazy"


def grokking_run(run, fit, grok, steps=200):
    """Constructed accuracy curves: train fits at `fit`, test at `grok` (None: never)."""
    rows = []
    for s in range(0, steps + 1, 10):
        rows.append((run, s, s / 10, "train", 1.0 if s >= fit else 0.5))
        rows.append((run, s, s / 10, "test", 1.0 if grok is not None and s >= grok else 0.1))
    return rows


def test_grokking_delay_on_constructed_curves():
    rows = grokking_run("grok", 30, 150) + grokking_run("memorise", 20, None)
    table = grokking_table(pd.DataFrame(rows, columns=["run", "step", "epoch", "split", "acc"])).set_index("run")
    assert table.loc["grok", "delay_steps"] == 120 and table.loc["grok", "delay_epochs"] == 12
    assert table.loc["grok", "generalised"] and not table.loc["memorise", "generalised"]
    assert np.isnan(table.loc["memorise", "delay_steps"])


def test_stage_table_labels_a_grokking_run():
    metrics = pd.DataFrame(grokking_run("g", 30, 150), columns=["run", "step", "epoch", "split", "acc"])
    steps = np.arange(0, 201, 10)
    delta = np.where(steps < 50, 1e-6, np.where(steps < 120, 0.05, 1e-6))  # frozen, moving, slow
    grad = np.where(steps < 180, 1.0, 1e-4)
    weights = pd.DataFrame({"run": "g", "step": steps, "observable": "weight_delta_rel", "layer": "h1", "value": delta})
    grads = pd.DataFrame({"run": "g", "step": steps, "observable": "grad_norm", "layer": None, "value": grad})
    table = stage_table(metrics, weights, grads).set_index("step").stage
    assert table[20] == "lazy" and table[100] == "independent"
    assert table[130] == "independent"  # slow again later, but lazy is only the first stage
    assert table[160] == "interactive" and table[200] == "converged"


def test_critical_fraction_interpolates():
    assert critical_fraction([0.1, 0.2, 0.3], [0.0, 0.4, 0.8]) == pytest.approx(0.225)
    assert np.isnan(critical_fraction([0.1, 0.2], [0.0, 0.2]))
    # Generalising already at the lowest fraction: only a bound, not a value to fit
    assert np.isnan(critical_fraction([0.3, 0.2, 0.1], [1.0, 1.0, 0.8]))
    assert critical_fraction([0.1, 0.2], [0.5, 1.0]) == 0.1  # half of the seeds exactly there


def test_m_log_m_fit_recovers_c():
    m = np.array([11, 17, 23, 31])
    c, r2 = fit_m_log_m(m, 2.5 * m * np.log(m))
    assert c == pytest.approx(2.5) and r2 == pytest.approx(1.0)


def test_scaling_table_end_to_end():
    runs, grok = [], []
    for m in (11, 23):
        crit = 3.0 * np.log(m) / m  # generalise above this fraction
        for f in (0.1, 0.2, 0.3, 0.5, 0.7, 0.9):
            for seed in (0, 1):
                run = f"M{m}f{f}s{seed}"
                runs.append({"run": run, "task.M": m, "task.train_fraction": f})
                grok.append({"run": run, "generalised": f >= crit})
    table = scaling_table(pd.DataFrame(runs), pd.DataFrame(grok))
    assert set(table.generalisation_rate) <= {0.0, 1.0}
    assert table.c.iloc[0] > 0 and np.isfinite(table.r2.iloc[0])


def test_stage_table_labels_a_memorising_run():
    """Train accuracy 1, test accuracy never rises: never interactive or converged."""
    metrics = pd.DataFrame(grokking_run("m", 20, None), columns=["run", "step", "epoch", "split", "acc"])
    steps = np.arange(0, 201, 10)
    weights = pd.DataFrame(
        {
            "run": "m",
            "step": steps,
            "observable": "weight_delta_rel",
            "layer": "h1",
            "value": np.where(steps < 30, 1e-6, 0.02),
        }
    )
    grads = pd.DataFrame({"run": "m", "step": steps, "observable": "grad_norm", "layer": None, "value": 1e-5})
    labels = stage_table(metrics, weights, grads).stage
    assert set(labels) == {"lazy", "independent"}
