"""`ios_core.models.zoo` beyond the import tests (tests/test_zoo_import.py): the BatchNorm calibration the
half-precision benchmark gives the library networks. Needs PyTorch; skips without it."""

import pytest


def test_calibrated_batch_norm_statistics_normalize_what_reaches_them():
    torch = pytest.importorskip("torch")
    from ios_core.models.zoo import calibrate_batch_norm

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8))
    with torch.no_grad():
        model[0].weight.mul_(100.0)  # activations far from unit scale, as a badly initialized network's
    batch = torch.randn(16, 3, 12, 12)
    calibrate_batch_norm(model, batch)
    assert not model.training and model[1].momentum is None
    with torch.no_grad():
        out = model(batch)
    assert abs(float(out.mean())) < 1e-3 and abs(float(out.std()) - 1.0) < 1e-2
