"""Statistics for evaluations: estimates with seeded percentile-bootstrap 95% intervals.

Everything here is a thin layer over scipy and scikit-learn, so the numbers are theirs:

- `bootstrap_ci`: any statistic of one or more paired samples (`scipy.stats.bootstrap`,
  percentile method, a seeded `numpy` generator, so the same call gives the same interval).
- `mean_ci`: the mean with its bootstrap interval.
- `pearson`, `spearman`: the correlation (`scipy.stats.pearsonr` / `spearmanr`) with a paired
  bootstrap interval (items are resampled with both of their scores).
- `kappa`: Cohen's kappa of two raters after thresholding scores at `threshold`
  (`sklearn.metrics.cohen_kappa_score`), with a paired bootstrap interval.
- `auroc`: area under the ROC curve (`sklearn.metrics.roc_auc_score`) with a stratified
  bootstrap interval: positives and negatives are resampled apart, so every resample has both
  classes (the AUROC of a resample is its Mann-Whitney U / (n_pos × n_neg),
  `scipy.stats.mannwhitneyu`, the same number computed in one vectorized pass).

An interval is NaN when the statistic is undefined on the data (a constant sample has no
correlation); resamples on which it is undefined are left out of the percentiles, and
`Estimate.n_resamples` says how many were used.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats as sps

N_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a percentile-bootstrap interval [low, high]."""

    value: float
    low: float
    high: float
    n: int  # items (pairs) the estimate is computed on
    confidence: float = CONFIDENCE
    n_resamples: int = 0  # bootstrap resamples on which the statistic was defined

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        if math.isnan(self.value):
            return "n/a"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = array[~np.isfinite(array)][0]
        raise ValueError(
            f"{name} holds a non-finite value ({bad}); drop items without a score first"
        )
    return array


def _pair(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a, b = _vector(x, "x"), _vector(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"x and y must pair up: {a.size} values against {b.size}")
    return a, b


def _check(confidence: float, n_resamples: int) -> None:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be at least 100 (default 2000), got {n_resamples}")


def bootstrap_ci(
    samples: Sequence[ArrayLike],
    statistic: Callable[..., Any],
    *,
    paired: bool = True,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """`statistic(*samples)` with a seeded percentile-bootstrap interval.

    `statistic(*arrays, axis=-1)` must reduce along the last axis (scipy's vectorized
    convention): it is called on [n_resamples, n] arrays and returns one value per resample.
    With `paired`, all samples are resampled with the same indices (they must pair up).
    """
    _check(confidence, n_resamples)
    data = [_vector(s, f"sample {i}") for i, s in enumerate(samples)]
    if not data or any(d.size < 2 for d in data):
        raise ValueError("the bootstrap needs at least 2 values in every sample")
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined resamples are NaN and are dropped below
        value = float(statistic(*data, axis=-1))
        result = sps.bootstrap(
            tuple(data),
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=paired,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    draws = np.asarray(result.bootstrap_distribution, dtype=np.float64)
    finite = draws[np.isfinite(draws)]
    n = int(data[0].size)
    if finite.size == 0:
        return Estimate(value, math.nan, math.nan, n, confidence, 0)
    # the percentile interval of the resamples where the statistic is defined (scipy's own
    # interval is NaN as soon as one resample is; with none undefined the two are equal)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return Estimate(value, float(low), float(high), n, confidence, int(finite.size))


def _mean(x: NDArray[np.float64], axis: int = -1) -> Any:
    return np.mean(x, axis=axis)


def mean_ci(
    values: ArrayLike,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """The mean of `values` with a percentile-bootstrap interval."""
    return bootstrap_ci([values], _mean, n_resamples=n_resamples, confidence=confidence, seed=seed)


def _pearson(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> Any:
    return sps.pearsonr(x, y, axis=axis).statistic


def _spearman(x: NDArray[np.float64], y: NDArray[np.float64], axis: int = -1) -> Any:
    # Spearman's rho is Pearson's r of the ranks (average ranks for ties), as spearmanr computes
    # it; ranking along the resample axis makes it one vectorized call.
    return _pearson(sps.rankdata(x, axis=axis), sps.rankdata(y, axis=axis), axis=axis)


def _enough(x: NDArray[np.float64], what: str, minimum: int = 3) -> None:
    if x.size < minimum:
        raise ValueError(f"{what} needs at least {minimum} paired values, got {x.size}")


def pearson(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """Pearson's r of paired values with a paired percentile-bootstrap interval."""
    a, b = _pair(x, y)
    _enough(a, "a Pearson correlation")
    est = bootstrap_ci([a, b], _pearson, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return _defined(est, a, b)


def spearman(
    x: ArrayLike,
    y: ArrayLike,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """Spearman's rho of paired values with a paired percentile-bootstrap interval."""
    a, b = _pair(x, y)
    _enough(a, "a Spearman correlation")
    est = bootstrap_ci([a, b], _spearman, n_resamples=n_resamples, confidence=confidence, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(sps.spearmanr(a, b).statistic) if _varies(a, b) else math.nan
    return _defined(Estimate(value, est.low, est.high, est.n, confidence, est.n_resamples), a, b)


def _varies(*arrays: NDArray[np.float64]) -> bool:
    return all(float(np.ptp(a)) > 0 for a in arrays)


def _defined(est: Estimate, *arrays: NDArray[np.float64]) -> Estimate:
    """NaN throughout when a sample is constant (a correlation is undefined there)."""
    if _varies(*arrays):
        return est
    return Estimate(math.nan, math.nan, math.nan, est.n, est.confidence, 0)


def _kappa(a: NDArray[np.float64], b: NDArray[np.float64], axis: int = -1) -> Any:
    # Cohen's kappa of two binary ratings, vectorized over resamples: (p_o - p_e) / (1 - p_e).
    # The point estimate comes from sklearn (see `kappa`); the test checks the two agree.
    p_o = np.mean(a == b, axis=axis)
    pa, pb = np.mean(a, axis=axis), np.mean(b, axis=axis)
    p_e = pa * pb + (1 - pa) * (1 - pb)
    with np.errstate(all="ignore"):
        return np.where(p_e < 1, (p_o - p_e) / (1 - p_e), np.nan)


def kappa(
    x: ArrayLike,
    y: ArrayLike,
    threshold: float = 50.0,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """Cohen's kappa of two raters' scores, each read as "yes" when >= `threshold`."""
    from sklearn.metrics import cohen_kappa_score

    a, b = _pair(x, y)
    _enough(a, "Cohen's kappa", 2)
    ya, yb = (a >= threshold).astype(np.float64), (b >= threshold).astype(np.float64)
    est = bootstrap_ci([ya, yb], _kappa, n_resamples=n_resamples, confidence=confidence, seed=seed)
    if len(set(ya.tolist()) | set(yb.tolist())) < 2:  # both raters say the same thing always
        return Estimate(math.nan, math.nan, math.nan, est.n, confidence, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        value = float(cohen_kappa_score(ya, yb))
    return Estimate(value, est.low, est.high, est.n, confidence, est.n_resamples)


def _auc(pos: NDArray[np.float64], neg: NDArray[np.float64], axis: int = -1) -> Any:
    u = sps.mannwhitneyu(pos, neg, axis=axis, method="asymptotic").statistic
    return u / (pos.shape[axis] * neg.shape[axis])


def auroc(
    labels: ArrayLike,
    scores: ArrayLike,
    *,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> Estimate:
    """AUROC of `scores` for binary `labels` (1 = positive), with a stratified bootstrap."""
    from sklearn.metrics import roc_auc_score

    y, s = _pair(labels, scores)
    if not set(np.unique(y).tolist()) <= {0.0, 1.0}:
        raise ValueError(f"labels must be 0 or 1, got values {sorted(set(y.tolist()))[:5]}")
    pos, neg = s[y == 1], s[y == 0]
    if pos.size < 2 or neg.size < 2:
        raise ValueError(
            f"AUROC needs at least 2 positives and 2 negatives, got {pos.size} and {neg.size}"
        )
    est = bootstrap_ci(
        [pos, neg],
        _auc,
        paired=False,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    value = float(roc_auc_score(y, s))
    return Estimate(value, est.low, est.high, int(y.size), confidence, est.n_resamples)
