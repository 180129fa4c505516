"""The demo's "drive with a video or your webcam" tab: a driving clip (uploaded, or
recorded with the webcam) and a photo in, the photo moved by the clip's face out
(``puppetry.pipeline.reenact_video``, as ``puppetry reenact``).
"""
from __future__ import annotations

import shutil
from dataclasses import replace

import gradio as gr

from puppetry import limits
from puppetry.pipeline import ReenactJob, reenact_video

from . import demo   # its helpers and limits, used at call time (demo imports this module)

MAX_CLIP_S = limits.SERVICE_MAX_SPEECH_S       # s of driving video per request
TRANSFERS = {"both": None, "only the head pose": "pose", "only the expression": "expression"}
MODES = {"relative (from the photo's own pose)": "relative",
         "absolute (the driver's head orientation)": "absolute"}


def generate(driver: str | None, portrait: str | None, mode: str = "relative", only: str | None = None,
             size: int = 384, keep_audio: bool = True, progress=gr.Progress()) -> str:
    """The Drive button: the driving clip's and the photo's paths and the options -> the
    result mp4's path. ``mode``: "relative" or "absolute" (or a ``MODES`` label); ``only``:
    None, "pose" or "expression" (or a ``TRANSFERS`` label). Bad input raises ``gr.Error``
    with the library's message, naming the upload."""
    from puppetry.io import video_info
    # 1. the inputs: a clip and a photo, within the demo's limits
    mode, only = MODES.get(mode, mode), TRANSFERS.get(only, only)
    if not driver:
        raise gr.Error("no driving clip: upload a video of a face, or record one with the webcam",
                       print_exception=False)
    if not portrait:
        raise gr.Error("no photo: upload a photo of one face, or take one with the webcam",
                       print_exception=False)
    demo._check_size(driver, "driving clip", demo.MAX_AUDIO_MB, "upload a shorter or smaller video")
    demo._check_size(portrait, "photo", demo.MAX_IMAGE_MB, "use a smaller JPEG or PNG")
    # 2. the job, and a folder for this request's output
    job = replace(ReenactJob(), size=int(size), mode=mode, only=only,
                  audio="keep" if keep_audio else "none")
    out = demo._request_folder()
    video = out / "puppetry_driven.mp4"
    # 3. the library does the work; its messages name the input and the fix
    try:
        limits.check_duration(video_info(driver)["duration"], "the driving clip", limit=MAX_CLIP_S,
                              name="SERVICE_MAX_SPEECH_S", fix="trim it")
        progress(0.1, desc="tracking the driver and reading the photo")
        reenact_video(portrait, driver, video, job)
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        shutil.rmtree(out, ignore_errors=True)
        raise gr.Error(demo._uploads_named(str(err), driver, portrait), print_exception=False) from None
    return str(video)


def build() -> None:
    """The tab, inside the demo's ``gr.Blocks``."""
    with gr.Tab("drive with a video or your webcam", id="drive"):
        gr.Markdown("A photo moved by the face in a video (`puppetry reenact PHOTO CLIP`): head "
                    "turns and nods, blinks, the mouth. Record yourself with the webcam, or upload "
                    f"any clip of one face (up to {MAX_CLIP_S / 60:.0f} min).")
        with gr.Row():
            with gr.Column():
                driver = gr.Video(label="driving clip", sources=["upload", "webcam"], elem_id="driver",
                                  height=280)
                portrait = gr.Image(label="photo to drive", type="filepath", sources=["upload", "webcam"],
                                    elem_id="drive_portrait", height=280)
                with gr.Accordion("options", open=False):
                    mode = gr.Radio(list(MODES), value=next(iter(MODES)), label="head pose")
                    only = gr.Radio(list(TRANSFERS), value="both", label="transfer")
                    size = gr.Radio(list(demo.SIZES), value=demo.DEFAULT_SIZE, label="size (px)")
                    keep_audio = gr.Checkbox(value=True, label="keep the clip's sound")
                button = gr.Button("Drive", variant="primary")
            with gr.Column():
                video = gr.Video(label="driven photo", elem_id="drive_video", height=400)
        gr.Examples([[demo._example_portrait()]], [portrait], label="example photo")
        button.click(generate, [driver, portrait, mode, only, size, keep_audio], [video],
                     show_progress_on=video)
