from featscope.schedules import checkpoint_steps, every, from_config, log_spaced


def test_every_step_and_ends():
    assert checkpoint_steps({"every": 1}, 7) == list(range(8))
    assert checkpoint_steps({"every": 4}, 10) == [0, 4, 8, 10]


def test_log_spaced_is_dense_early():
    steps = [s for s in range(1001) if log_spaced(1000, 30)(s)]
    assert steps[0] == 0 and steps[-1] == 1000
    assert sum(s < 100 for s in steps) > sum(s >= 500 for s in steps)


def test_union():
    sched = from_config({"every": 100, "log": 10}, 1000)
    assert all(sched(s) for s in (0, 100, 1000, 1))
    assert every(3)(9) and not every(3)(10)


def test_log_below_keeps_only_the_early_log_spaced_steps():
    total, count = 2000, 40
    log_steps = [s for s in range(total + 1) if log_spaced(total, count)(s)]
    got = checkpoint_steps({"every": 50, "log": count, "log_below": 50}, total)
    assert got == sorted(set([s for s in log_steps if s < 50] + list(range(0, total + 1, 50))))
    gaps = [b - a for a, b in zip(got, got[1:])]
    late = gaps[got.index(50) :]
    assert late == [50] * len(late)  # evenly spaced once the log-spaced steps stop
    assert checkpoint_steps({"log": count, "log_below": 0}, total) == [0, total]  # the ends stay
