"""Hard photos (issue 10): close-ups, faces near an edge, a mid-speech still.

The cases are made here from the bundled portrait (crops) and from a dev video (its most
open frame, read in place from shared/dev), and judged by re-tracking what is rendered.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from puppetry import DrivingFrame, WarpRenderer, load_portrait
from puppetry.eval import metrics
from puppetry.expression.arkit import INDEX
from puppetry.face.tracker import FaceTracker, detect_face
from puppetry.portrait import bundled_portrait

MAX_REST_GAP = 0.06        # lips closed: lip gap at all-zero, eye-corner distances
MIN_JAW_GAP = 0.35         # lip gap at jawOpen 0.8
MIN_BLINK_DROP = 0.7       # eye aspect ratio drop at a full blink


@pytest.fixture(scope="module")
def tracker():
    t = FaceTracker(static=True)
    yield t
    t.close()


@pytest.fixture(scope="module")
def photo():
    return bundled_portrait()


def _crop(rgb, widths, where=(0.5, 0.5)):
    """A square crop ``widths`` face widths wide with the face centre at ``where``."""
    x0, y0, x1, y1 = detect_face(rgb).box
    side = int(min(widths * (x1 - x0), *rgb.shape[:2]))
    left = int(np.clip((x0 + x1) / 2 - where[0] * side, 0, rgb.shape[1] - side))
    top = int(np.clip((y0 + y1) / 2 - where[1] * side, 0, rgb.shape[0] - side))
    return np.ascontiguousarray(rgb[top:top + side, left:left + side])


def _dev_video(name):
    for root in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        if (root / "dev" / "videos" / name).exists():
            return root / "dev" / "videos" / name
    pytest.skip(f"dev video {name} is not here (shared/dev)")


@pytest.fixture(scope="module")
def speech_still(tracker):
    """A real still with the lips apart mid-speech, teeth showing: the frame of a dev video
    (GRID, read in place) where the speaker's lips are furthest apart."""
    cap = cv2.VideoCapture(str(_dev_video("grid_brbk7n.mp4")))
    best, gap = None, -1.0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        face = tracker.track(rgb := cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if face is not None and metrics.lip_gap(face.landmarks) > gap:
            best, gap = rgb, metrics.lip_gap(face.landmarks)
    cap.release()
    return best


def _inside(box, shape):
    x0, y0, x1, y1 = box
    return x0 >= -0.5 and y0 >= -0.5 and x1 <= shape[1] + 0.5 and y1 <= shape[0] + 0.5


def test_close_up_canvas_is_the_photo_not_a_mirror(photo):
    close = _crop(photo, 1.3)                       # the face fills the frame
    p = load_portrait(close, size=256)
    assert _inside(p.source_box, close.shape)
    # the whole canvas is the photo, resized: no reflected copy of the chin or the hair
    expected = cv2.resize(close, p.size[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(p.image.astype(int) - expected).mean() < 4


def test_face_near_an_edge_stays_inside_the_photo(photo):
    edge = _crop(photo, 2.2, (0.2, 0.45))           # face near the left edge
    p = load_portrait(edge, size=256)
    assert _inside(p.source_box, edge.shape)
    x0, y0, x1, y1 = p.source_box
    sx = p.size[1] / (x1 - x0)
    # the canvas is the photo's region, resized
    region = edge[round(y0):round(y1), round(x0):round(x1)]
    expected = cv2.resize(region, p.size[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(p.image.astype(int) - expected).mean() < 6
    assert sx > 0


def test_small_photo_keeps_its_aspect():
    # smaller than the head crop on both sides: the canvas is the whole photo, its aspect kept
    small = np.ascontiguousarray(bundled_portrait()[30:230, 140:380])   # 240 x 200; the head crop is ~250
    p = load_portrait(small, size=300)
    assert p.source_box == pytest.approx((0, 0, 240, 200), abs=0.5)
    h, w = p.size
    assert w == 300 and abs(h / w - 200 / 240) < 0.01 and h % 2 == 0


def test_head_turn_past_the_edge_shows_the_background_plate(photo):
    p = load_portrait(_crop(photo, 1.3), size=256)
    rgb = WarpRenderer(p).render_frame(DrivingFrame.make(yaw=25, tx=0.3))
    assert rgb.shape == (*p.size, 3)
    # the frame's pixels all come from the photo or its plate: none is brighter than both
    # (a replicated or mirrored border would repeat the edge's colours inward)
    top = np.maximum(p.image, p.background).astype(int) + 40
    assert (rgb.astype(int) <= top).all(-1).mean() > 0.99


def test_mid_speech_still_closes_its_lips(speech_still, tracker):
    own = metrics.lip_gap(tracker.track(speech_still).landmarks)
    assert own > 0.15                                    # the still's lips are well apart
    p = load_portrait(speech_still)
    assert p.expression.max() > 0.1                      # the still's own expression was fitted
    r = WarpRenderer(p)
    rest = metrics.lip_gap(tracker.track(r.render_frame(DrivingFrame())).landmarks)
    assert rest <= MAX_REST_GAP
    opened = metrics.lip_gap(tracker.track(r.render_frame(
        DrivingFrame.make(expression={"jawOpen": 0.8}))).landmarks)
    assert opened >= MIN_JAW_GAP


def test_jaw_open_is_arkit_scale_on_a_closed_mouth(speech_still, tracker):
    # jawOpen 0.8 parts closed lips by at least MIN_JAW_GAP; 1 a little more
    r = WarpRenderer(load_portrait(speech_still))
    gaps = [metrics.lip_gap(tracker.track(r.render_frame(
        DrivingFrame.make(expression={"jawOpen": w}))).landmarks) for w in (0.0, 0.8, 1.0)]
    assert gaps[0] <= MAX_REST_GAP < MIN_JAW_GAP <= gaps[1] <= gaps[2] + 0.02


@pytest.mark.parametrize("case", ["speech_still", "toothy_closeup"])
def test_open_mouth_retracks_as_its_geometry(case, speech_still, photo, tracker):
    # teeth-showing photos (a mid-speech still; the bundled portrait's smile, close up):
    # at jawOpen 0.6 the re-tracked inner lips lie where the geometry put them, and the
    # mouth is as wide
    rgb = speech_still if case == "speech_still" else _crop(photo, 1.6)
    r = WarpRenderer(load_portrait(rgb, size=320))
    frame = DrivingFrame.make(expression={"jawOpen": 0.6})
    upper, lower, width = metrics.lip_offsets(tracker.track(r.render_frame(frame)).landmarks,
                                              r.posed_vertices(frame))
    assert abs(upper) < 0.05 and abs(lower) < 0.05 and abs(width - 1) < 0.1


def test_blink_closes_the_eye(photo, tracker):
    for rgb in (photo, _crop(photo, 1.3)):
        r = WarpRenderer(load_portrait(rgb))
        open_ = metrics.eye_aspect_ratio(tracker.track(r.render_frame(DrivingFrame())).landmarks)
        shut = metrics.eye_aspect_ratio(tracker.track(r.render_frame(
            DrivingFrame.make(expression={"eyeBlinkLeft": 1, "eyeBlinkRight": 1}))).landmarks)
        assert shut <= (1 - MIN_BLINK_DROP) * open_


def test_blink_closes_a_smiling_eye(tracker):
    # a toothy smile raises the cheeks under the eyes (the lower lids sit high): a blink
    # still closes the eyes (a dev portrait, London set, read in place)
    for root in (Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")):
        found = sorted((root / "dev" / "portraits").glob("london061_*.jpg"))
        if found:
            break
    else:
        pytest.skip("dev portrait london061 is not here (shared/dev)")
    r = WarpRenderer(load_portrait(str(found[0])))
    open_ = metrics.eye_aspect_ratio(tracker.track(r.render_frame(DrivingFrame())).landmarks)
    shut = metrics.eye_aspect_ratio(tracker.track(r.render_frame(
        DrivingFrame.make(expression={"eyeBlinkLeft": 1, "eyeBlinkRight": 1}))).landmarks)
    assert shut <= (1 - MIN_BLINK_DROP) * open_


def test_teeth_are_rigid(speech_still):
    # the upper row hangs from the skull: its height in the mouth's middle column is the
    # same at any opening (never stretched with the jaw)
    p = load_portrait(speech_still)
    r = WarpRenderer(p)
    lm = p.landmarks
    x = int(round(lm[[13, 14], 0].mean()))
    heights = []
    for w in (0.5, 1.0):
        rgb = r.render_frame(DrivingFrame.make(expression={"jawOpen": w}))
        pts = r.posed_vertices(DrivingFrame.make(expression={"jawOpen": w}))
        y0, y1 = int(pts[13, 1]) + 1, int(pts[14, 1]) - 1
        column = rgb[y0:y1, x - 1:x + 2].astype(float).mean(1).sum(1)   # brightness down the mouth
        teeth = column > 0.6 * column.max()
        heights.append(int(np.argmin(teeth)) if not teeth.all() else len(teeth))   # bright run from the lip
    assert heights[0] > 2
    assert abs(heights[0] - heights[1]) <= 2



def test_a_closed_mouth_still_rests_closed(tracker):
    """A still with the lips closed whose chin is longer than the canonical face's fits as
    some jawOpen (0.19 on this Obama frame); undoing all of it pushed the lower lip into the
    upper one and the rendered rest showed an open mouth (0.11 IOD re-tracked). Only the
    jaw opening that parts the photo's lips is undone."""
    cap = cv2.VideoCapture(str(_dev_video("obama_weekly_address_2010.mp4")))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 333)                 # the still evaluate_lipsync drives
    ok, bgr = cap.read()
    cap.release()
    assert ok
    still = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    assert metrics.lip_gap(tracker.track(still).landmarks) < 0.03      # its lips are closed
    p = load_portrait(still, size=384, frame="full")
    assert p.expression[INDEX["jawOpen"]] < 0.05
    rest = metrics.lip_gap(tracker.track(WarpRenderer(p).render_frame(DrivingFrame())).landmarks)
    assert rest <= MAX_REST_GAP
