"""Statistics: estimates equal hand computations; intervals are seeded and cover the truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from interp.eval import stats


def _hand_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of values without ties."""
    ranks = np.empty(len(x))
    ranks[np.argsort(x)] = np.arange(1, len(x) + 1)
    return ranks


def test_point_estimates_equal_hand_computations():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.5 * x + rng.normal(size=40)
    assert stats.mean_ci(x).value == pytest.approx(x.sum() / len(x), abs=1e-12)
    r = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert stats.pearson(x, y).value == pytest.approx(r, abs=1e-12)
    rx, ry = _hand_ranks(x), _hand_ranks(y)
    rho = 1 - 6 * ((rx - ry) ** 2).sum() / (len(x) * (len(x) ** 2 - 1))  # no ties
    assert stats.spearman(x, y).value == pytest.approx(rho, abs=1e-12)


def test_kappa_equals_the_hand_formula_at_the_threshold():
    a = np.array([10, 60, 70, 20, 55, 90, 49, 50, 30, 80, 65, 5])
    b = np.array([20, 70, 40, 10, 60, 95, 51, 45, 35, 30, 75, 55])
    ya, yb = a >= 50, b >= 50
    p_o = np.mean(ya == yb)
    p_e = ya.mean() * yb.mean() + (1 - ya.mean()) * (1 - yb.mean())
    est = stats.kappa(a, b, 50.0)
    assert est.value == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-12)
    assert est.low <= est.value <= est.high
    # the vectorized kappa the bootstrap uses agrees with sklearn's on every resample
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), size=(50, len(a)))
    from sklearn.metrics import cohen_kappa_score

    fast = stats._kappa(ya[idx].astype(float), yb[idx].astype(float))
    for row, value in zip(idx, fast, strict=True):
        if not math.isnan(value):
            assert value == pytest.approx(cohen_kappa_score(ya[row], yb[row]), abs=1e-12)


def test_auroc_equals_the_pair_count_and_every_resample_has_both_classes():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    scores = np.array([0.9, 0.1, 0.4, 0.4, 0.3, 0.8, 0.2, 0.7, 0.5, 0.1, 0.0, 0.6])
    pos, neg = scores[labels == 1], scores[labels == 0]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    est = stats.auroc(labels, scores, n_resamples=500)
    assert est.value == pytest.approx(wins / (len(pos) * len(neg)), abs=1e-12)
    assert est.n_resamples == 500  # stratified: no resample lost a class (3 positives only)
    assert est.low <= est.value <= est.high


def test_interval_is_scipys_percentile_interval_and_is_seeded():
    rng = np.random.default_rng(1)
    x = rng.exponential(size=30)
    ours = stats.mean_ci(x, n_resamples=1000, seed=7)
    theirs = sps.bootstrap(
        (x,), np.mean, n_resamples=1000, method="percentile", rng=np.random.default_rng(7)
    ).confidence_interval
    assert (ours.low, ours.high) == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    assert stats.mean_ci(x, n_resamples=1000, seed=7) == ours
    assert stats.mean_ci(x, n_resamples=1000, seed=8) != ours


def test_mean_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 200
    for t in range(trials):
        sample = rng.normal(loc=2.0, size=40)
        est = stats.mean_ci(sample, n_resamples=500, seed=t)
        hits += est.low <= 2.0 <= est.high
        # width close to the normal-theory 2 × 1.96 × s / sqrt(n)
        expected = 2 * 1.96 * sample.std(ddof=1) / math.sqrt(40)
        assert 0.7 * expected < est.high - est.low < 1.3 * expected
    assert 0.89 <= hits / trials <= 0.99


def test_correlation_intervals_cover_the_true_correlation():
    rng = np.random.default_rng(1)
    rho = 0.6
    cov = [[1, rho], [rho, 1]]
    spearman_true = 6 / math.pi * math.asin(rho / 2)  # population Spearman of a normal pair
    hits_p = hits_s = 0
    trials = 120
    for t in range(trials):
        x, y = rng.multivariate_normal([0, 0], cov, size=60).T
        p = stats.pearson(x, y, n_resamples=500, seed=t)
        s = stats.spearman(x, y, n_resamples=500, seed=t)
        hits_p += p.low <= rho <= p.high
        hits_s += s.low <= spearman_true <= s.high
    assert 0.85 <= hits_p / trials <= 0.99
    assert 0.85 <= hits_s / trials <= 0.99


def test_undefined_statistics_are_nan_and_bad_input_is_named():
    const = stats.pearson([3, 3, 3, 3], [1, 2, 3, 4])
    assert math.isnan(const.value) and math.isnan(const.low) and str(const) == "n/a"
    assert math.isnan(stats.kappa([90, 80, 70], [60, 99, 51]).value)  # everyone says yes
    with pytest.raises(ValueError, match=r"non-finite value \(nan\)"):
        stats.pearson([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(ValueError, match="3 values against 2"):
        stats.spearman([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="at least 2 positives and 2 negatives, got 1 and 3"):
        stats.auroc([1, 0, 0, 0], [0.2, 0.1, 0.3, 0.4])
    with pytest.raises(ValueError, match="confidence must be in"):
        stats.mean_ci([1, 2, 3], confidence=95.0)
