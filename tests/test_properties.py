"""Property-based tests (hypothesis): MA-EM on awkward inputs, and loaders fed random bytes."""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mavae.datasets import load_dataset
from mavae.mixture import ManifoldAnchoredGMM


@st.composite
def awkward_data(draw):
    """(X, K): random shapes and values, with duplicated rows and constant columns mixed in."""
    n = draw(st.integers(2, 40))
    d = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = rng.normal(0, draw(st.sampled_from([1e-3, 1.0, 1e3])), (n, d))
    if draw(st.booleans()):  # duplicated points
        x[rng.integers(0, n, n // 2)] = x[0]
    if d > 1 and draw(st.booleans()):  # a constant column
        x[:, rng.integers(0, d)] = 5.0
    k = draw(st.integers(1, n))  # K = n included
    return x, k


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(awkward_data())
def test_ma_em_fits_or_says_why(data):
    x, k = data
    gmm = ManifoldAnchoredGMM(k, random_state=0, max_iter=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            labels = gmm.fit_predict(x)
        except ValueError as error:  # the one refusal: an ill-defined covariance, said in words
            assert "ill-defined empirical covariance" in str(error) or "zero variance" in str(error)
            return
    assert labels.shape == (len(x),) and labels.min() >= 0 and labels.max() < k
    np.testing.assert_array_equal(gmm.means_, x[gmm.medoid_indices_])  # every mean is a data point
    proba = gmm.predict_proba(x)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1.0)
    np.testing.assert_array_equal(labels, gmm.predict(x))


@settings(max_examples=20, deadline=None)
@given(st.integers(2, 30), st.integers(1, 4), st.sampled_from([np.nan, np.inf, -np.inf]))
def test_ma_em_rejects_non_finite_input(n, d, bad):
    x = np.random.default_rng(n).normal(size=(n, d))
    x[n // 2, d - 1] = bad
    with pytest.raises(ValueError, match="NaN|[Ii]nfinity"):
        ManifoldAnchoredGMM(1).fit(x)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=3000), st.sampled_from(["png", "nii", "npz"]))
def test_loaders_turn_random_bytes_into_a_clear_error(tmp_path_factory, payload, kind):
    folder = tmp_path_factory.mktemp("random")
    if kind == "npz":
        path = folder / "data.npz"
        path.write_bytes(payload)
    else:
        for i in range(3):
            (folder / f"scan{i}.{kind}").write_bytes(payload + bytes([i]))
        path = folder
    with pytest.raises(ValueError):
        load_dataset(path)
