"""pipelines/diagnose_lipsync.py's pieces: the aperture and the filter switched off."""
import numpy as np
import torch

from puppetry.expression.arkit import INDEX, N_EXPRESSIONS
from puppetry.expression.model import Audio2Expression, ModelDims


def test_aperture_is_the_lip_gap_plus_lip_shapes(pipeline):
    aperture = pipeline("diagnose_lipsync").aperture
    e = np.zeros((3, N_EXPRESSIONS), np.float32)
    e[:, INDEX["jawOpen"]] = [0.0, 0.4, 0.4]
    e[:, INDEX["mouthClose"]] = [0.0, 0.4, 0.1]                  # sealed, then parted
    e[2, INDEX["mouthLowerDownLeft"]] = 0.5
    np.testing.assert_allclose(aperture(e), [0.0, 0.0, 0.3 + 0.3 * 0.5], atol=1e-6)


def test_unfiltered_model_gives_each_frame_its_own_expression(pipeline):
    unfiltered = pipeline("diagnose_lipsync").unfiltered
    model = Audio2Expression(ModelDims(window=8)).eval()
    windows = torch.randn(1, 12, 8, 80)
    with torch.no_grad():
        _, e = model.per_frame(windows)
        filtered = model(windows)
        plain = unfiltered(model)(windows)
    torch.testing.assert_close(plain, e.clamp(0, 1))
    assert not torch.allclose(filtered, plain)
