import numpy as np
import pytest
import torch

from interp import ops


@pytest.fixture()
def acts():
    g = torch.Generator().manual_seed(0)
    return torch.randn(40, 3, 16, generator=g)  # n layer d


def test_masked_mean_matches_a_loop():
    x = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 1, 1, 1, 0], [0, 0, 0, 0, 1]]).bool()
    got = ops.masked_mean(x, mask)
    for b in range(3):
        assert torch.allclose(got[b], x[b][mask[b]].mean(0))
    assert ops.masked_mean(x, torch.zeros(3, 5, dtype=torch.bool)).isnan().all()


def test_mean_differences(acts):
    pos, neg = acts[:20], acts[20:]
    assert torch.allclose(ops.mean_diff(pos, neg), pos.mean(0) - neg.mean(0))
    assert torch.allclose(ops.paired_mean_diff(pos, neg), (pos - neg).mean(0))
    assert torch.allclose(ops.mean_diff(pos, neg), ops.paired_mean_diff(pos, neg), atol=1e-6)
    with pytest.raises(ValueError, match="aligned pairs"):
        ops.paired_mean_diff(pos, neg[:5])
    with pytest.raises(ValueError, match="neg has no examples"):
        ops.mean_diff(pos, neg[:0])


def test_projection_and_cosine_at_every_layer(acts):
    dirs = torch.randn(2, 3, 16)
    proj, cos = ops.project(acts, dirs), ops.cosine(acts, dirs)
    assert proj.shape == cos.shape == (40, 2, 3)
    for n, k, layer in [(0, 0, 0), (7, 1, 2), (39, 1, 1)]:
        a, v = acts[n, layer], dirs[k, layer]
        assert torch.allclose(proj[n, k, layer], a @ v / v.norm(), atol=1e-5)
        assert torch.allclose(
            cos[n, k, layer], torch.nn.functional.cosine_similarity(a, v, dim=0), atol=1e-6
        )
    with pytest.raises(ValueError, match="zero vector"):
        ops.project(acts, torch.zeros(1, 3, 16))


def test_project_out_and_orthogonalize(acts):
    v = torch.randn(16)
    out = ops.project_out(acts, v)
    assert torch.allclose(out @ (v / v.norm()), torch.zeros(40, 3), atol=1e-5)
    a, b = torch.randn(3, 16), torch.randn(3, 16)
    o = ops.orthogonalize(a, b)
    assert torch.allclose((o * b).sum(-1), torch.zeros(3), atol=1e-5)


def test_scale_modes():
    d = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert torch.equal(ops.scale_directions(d, "raw"), d)
    assert torch.allclose(ops.scale_directions(d, "unit").norm(dim=-1), torch.ones(2))
    scaled = ops.scale_directions(d, "resid_norm", torch.tensor([10.0, 100.0]))
    assert torch.allclose(scaled.norm(dim=-1), torch.tensor([10.0, 100.0]))
    with pytest.raises(ValueError, match="needs the mean residual norm"):
        ops.scale_directions(d, "resid_norm")
    with pytest.raises(ValueError, match="unknown scale mode"):
        ops.scale_directions(d, "relative")


def test_pca_matches_numpy_svd_per_layer(acts):
    result = ops.pca(acts, k=3)
    for layer in range(3):
        x = acts[:, layer].double().numpy()
        x = x - x.mean(0)
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        assert np.allclose(result.explained_variance[layer].numpy(), (s[:3] ** 2) / 39, rtol=1e-4)
        for k in range(3):  # equal up to sign
            got = result.components[layer, k].double().numpy()
            assert abs(abs(got @ vt[k]) - 1) < 1e-4
    scores = result.transform(acts, standardize=True)
    assert torch.allclose(scores.std(0), torch.ones(3, 3), atol=1e-4)
    with pytest.raises(ValueError, match="at least 2"):
        ops.pca(acts[:1], 1)


def test_probe_matches_sklearn_on_standardised_features():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(1)
    n, d = 200, 12
    labels = torch.arange(n) % 2
    truth = torch.randn(2, d, generator=g)
    x = torch.randn(n, 2, d, generator=g) + 0.6 * (labels[:, None, None] * 2 - 1) * truth
    result = ops.probe(x, labels)
    for layer in range(2):
        xl = x[:, layer].numpy()
        z = (xl - xl.mean(0)) / x[:, layer].std(0).numpy()
        ref = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000).fit(z, labels.numpy())
        w_z = result.direction[layer].numpy() * x[:, layer].std(0).numpy()
        cos = w_z @ ref.coef_[0] / np.linalg.norm(w_z) / np.linalg.norm(ref.coef_[0])
        assert cos > 0.9999
        assert np.allclose(np.linalg.norm(w_z), np.linalg.norm(ref.coef_[0]), rtol=1e-3)
        sk_acc = ref.score(z, labels.numpy())
        assert abs(result.train_accuracy[layer].item() - sk_acc) < 1e-6
    with pytest.raises(ValueError, match="both classes"):
        ops.probe(x, torch.zeros(n))
