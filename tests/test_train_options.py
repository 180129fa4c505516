"""Training options of pipelines/train_audio2expression.py (the loss only: fast)."""
from pathlib import Path

import pytest
import torch

JAW, CLOSE, PRESS_L, PRESS_R = 0, 1, 2, 3     # columns of a toy 5-output model
CLOSURE_COLS = [CLOSE, PRESS_L, PRESS_R]


def _batch():
    """Frames 0-9 open (jaw 0.5), frames 10-19 a closure (press 0.6, sealed): the
    prediction misses both by the same amount."""
    target = torch.zeros(2, 20, 5)
    target[:, :10, JAW] = 0.5
    target[:, 10:, JAW] = 0.1
    target[:, 10:, CLOSE] = 0.1
    target[:, 10:, PRESS_L] = target[:, 10:, PRESS_R] = 0.6
    pred = target + 0.2
    return pred, target


def _share_of_closure(loss_fn, closure_weight, aperture):
    """Share of the loss gradient's magnitude that falls on the closure frames."""
    pred, target = _batch()
    pred.requires_grad_(True)
    loss_fn(pred, target, CLOSURE_COLS, aperture, closure_weight).backward()
    g = pred.grad.abs().sum(-1)                       # (B, T)
    return float(g[:, 10:].sum() / g.sum())


@pytest.mark.parametrize("aperture", [None, (JAW, CLOSE)])
def test_closure_weight_raises_the_closure_frames_share(pipeline, aperture):
    loss_fn = pipeline("train_audio2expression").loss_fn
    shares = [_share_of_closure(loss_fn, w, aperture) for w in (0.0, 1.0, 3.0)]
    assert shares[0] < shares[1] < shares[2]
    assert shares[2] > 0.5                            # closures now outweigh open frames


def test_closure_weight_one_is_the_original_loss(pipeline):
    loss_fn = pipeline("train_audio2expression").loss_fn
    pred, target = _batch()
    for aperture in (None, (JAW, CLOSE)):
        assert torch.isclose(loss_fn(pred, target, CLOSURE_COLS, aperture),
                             loss_fn(pred, target, CLOSURE_COLS, aperture, 1.0))
    # by hand: l1 + 0.5 vel + closure term (+ 2 x aperture) with weight 1
    err = (pred - target).abs()
    closed = target[..., CLOSURE_COLS].amax(-1, keepdim=True)
    vel = ((pred[:, 1:] - pred[:, :-1]) - (target[:, 1:] - target[:, :-1])).abs().mean()
    expected = err.mean() + 0.5 * vel + (err * closed).mean()
    assert torch.isclose(loss_fn(pred, target, CLOSURE_COLS, None, 1.0), expected)
    gap = lambda x: x[..., JAW] - x[..., CLOSE]
    expected = expected + 2.0 * (gap(pred) - gap(target)).abs().mean()
    assert torch.isclose(loss_fn(pred, target, CLOSURE_COLS, (JAW, CLOSE), 1.0), expected)


def test_closure_weight_is_a_command_line_option():
    text = (Path(__file__).resolve().parents[1] / "pipelines" / "train_audio2expression.py").read_text()
    assert "--closure-weight" in text
