"""``puppetry demo``: the browser page (Gradio). A portrait and speech in, a talking video,
its ARKit curves and a plot of them out.

Thin over the library: ``generate`` checks the uploads, maps the controls to an
``AnimateJob`` and calls ``animate_video``; everything else is layout. Works offline
(Gradio's fonts and scripts are served locally; analytics and share links are off).

>>> from puppetry.ui.demo import launch
>>> launch(host="127.0.0.1", port=7860)      # then open http://127.0.0.1:7860
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported

import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import pandas as pd
from PIL import Image

import puppetry.assets
from puppetry import limits
from puppetry.audio import audio_duration
from puppetry.drive.motion import POSE_LIMITS
from puppetry.expression.arkit import INDEX
from puppetry.expression.export import read_curves
from puppetry.pipeline import AnimateJob, animate_video
from puppetry.portrait import BUNDLED, bundled_portrait
from puppetry.tts import installed_voices
from puppetry.ui import tab_drive, tab_person   # tabs; they use this module's helpers at call time

MB = limits.MB                                           # bytes
MAX_IMAGE_MB = limits.SERVICE_MAX_IMAGE_BYTES // MB      # portrait upload (puppetry/limits.py)
MAX_AUDIO_MB = limits.SERVICE_MAX_AUDIO_BYTES // MB      # speech upload, and any upload
MAX_SPEECH_S = limits.SERVICE_MAX_SPEECH_S               # seconds of speech per request
MAX_TEXT_CHARS = limits.SERVICE_MAX_TEXT_CHARS           # typed text, characters
SIZES = (256, 384, 512)     # output sizes offered, pixels
DEFAULT_SIZE = 384
PLOTTED = ("jawOpen", "mouthClose", "mouthFunnel", "eyeBlinkLeft")  # curves drawn in the plot
KEEP_S = 3600               # request folders (and Gradio's copies) older than this are removed
WORK = Path(tempfile.gettempdir()) / "puppetry-demo"
SPEECH_EXAMPLE = Path(puppetry.assets.__file__).parent / "speech_en.ogg"  # the bundled speech
TABS: tuple = (tab_person, tab_drive)   # modules with build(): a tab each, after the first
TEXT_EXAMPLE = "Hello! I was a still photo a moment ago. Now I can say anything you type."


def generate(portrait: str | None, speech: str | None, text: str | None, size: int = DEFAULT_SIZE,
             voice: str = "espeak", seed: int = 0, still: bool = False, motion_scale: float = 1.0,
             intensity: float = 1.0, blink_rate: float = 15.0, yaw: float = 0.0, pitch: float = 0.0,
             roll: float = 0.0, progress=gr.Progress()):
    """The Generate button: file paths and control values -> (mp4 path, [mp4, curves JSON],
    DataFrame of the plotted curves with columns ``time (s)``, ``curve``, ``weight``).

    Bad input raises ``gr.Error`` with the library's message, shown on the page.
    """
    # 1. the inputs: one portrait, speech or text (not both), within the limits
    text = (text or "").strip() or None
    if not portrait:
        raise gr.Error("no portrait: upload a photo of one face, or take one with the webcam",
                       print_exception=False)
    _check_size(portrait, "portrait", MAX_IMAGE_MB, "use a smaller JPEG or PNG")
    if speech is None and text is None:
        raise gr.Error("no speech: upload or record speech, or type text for the offline voice",
                       print_exception=False)
    if speech is not None and text is not None:
        raise gr.Error("both speech and text given: clear the speech (x) to use the text, "
                       "or clear the text to use the speech", print_exception=False)
    if speech is not None:
        _check_size(speech, "speech", MAX_AUDIO_MB, "upload a compressed file (mp3, ogg, m4a)")
    elif len(text) > MAX_TEXT_CHARS:
        raise gr.Error(f"the text has {len(text)} characters: the demo says up to "
                       f"{MAX_TEXT_CHARS}; shorten it", print_exception=False)
    # 2. the job, and a folder for this request's outputs
    job = replace(AnimateJob(), size=int(size), voice=voice, seed=int(seed or 0),
                  still=bool(still), motion_scale=float(motion_scale), intensity=float(intensity),
                  blink_rate=float(blink_rate), pose_offset=(float(yaw), float(pitch), float(roll)))
    out = _request_folder()
    video, curves = out / "puppetry.mp4", out / "puppetry_arkit.json"
    # 3. the library does the work; its messages name the input and the fix
    try:
        seconds = audio_duration(speech) if speech is not None else 0.0
        if seconds > MAX_SPEECH_S:
            raise ValueError(f"the speech lasts {seconds / 60:.1f} min: the demo takes up to "
                             f"{MAX_SPEECH_S / 60:.0f} min; trim it")
        animate_video(portrait, speech, video, job, text=text, expressions_out=curves,
                      progress=lambda done, total, stage: progress(done / total, desc=stage))
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        shutil.rmtree(out, ignore_errors=True)
        raise gr.Error(_uploads_named(str(err), portrait, speech), print_exception=False) from None
    return str(video), [str(video), str(curves)], curves_frame(curves)


def curves_frame(path) -> pd.DataFrame:
    """The ``PLOTTED`` curves of an ARKit curves file, long format for ``gr.LinePlot``."""
    expressions, fps = read_curves(path)                   # float32[T x 52], 0..1
    time_s = [i / fps for i in range(len(expressions))]
    return pd.concat([pd.DataFrame({"time (s)": time_s, "curve": name,
                                    "weight": expressions[:, INDEX[name]]}) for name in PLOTTED],
                     ignore_index=True)


def _uploads_named(message: str, *uploads: str | None) -> str:
    """``message`` with the server's paths of the uploads (Gradio's temp folders, ours)
    replaced by the uploads' own names: the page shows no server paths."""
    for path in uploads:
        if path:
            message = message.replace(str(Path(path)), Path(path).name)
    return message.replace(str(WORK) + os.sep, "")


def _check_size(path: str, what: str, limit_mb: float, fix: str) -> None:
    mb = os.path.getsize(path) / MB
    if mb > limit_mb:
        raise gr.Error(f"the {what} file {Path(path).name} is {mb:.1f} MB: the demo takes up to "
                       f"{limit_mb:g} MB; {fix}", print_exception=False)


def _request_folder() -> Path:
    """A new folder for one request's outputs; folders older than ``KEEP_S`` are removed."""
    WORK.mkdir(parents=True, exist_ok=True)
    for old in WORK.glob("job-*"):
        if time.time() - old.stat().st_mtime > KEEP_S:
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="job-", dir=WORK))


def _example_portrait() -> str:
    """The bundled portrait as a PNG file (Gradio's examples take files)."""
    path = WORK / f"{BUNDLED}.png"
    if not path.is_file():
        WORK.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.png")
        Image.fromarray(bundled_portrait()).save(tmp)
        os.replace(tmp, path)
    return str(path)


def build() -> gr.Blocks:
    """The page, not yet launched."""
    with gr.Blocks(title="puppetry demo", analytics_enabled=False,
                   delete_cache=(KEEP_S, KEEP_S)) as demo:
        gr.Markdown("# puppetry\nA portrait and speech into a talking video, on this computer's "
                    "CPU. Upload or capture a photo of one face, then upload or record speech, "
                    "or type text for the offline voice.")
        with gr.Tab("speech + portrait", id="animate"):
            with gr.Row():
                with gr.Column():
                    portrait = gr.Image(label="portrait", type="filepath", image_mode=None,
                                        sources=["upload", "webcam", "clipboard"], height=280,
                                        elem_id="portrait")
                    speech = gr.Audio(label=f"speech (up to {MAX_SPEECH_S / 60:.0f} min)",
                                      type="filepath", sources=["upload", "microphone"],
                                      elem_id="speech")
                    with gr.Row():
                        text = gr.Textbox(label="…or text to say", lines=2, scale=3,
                                          max_length=MAX_TEXT_CHARS, placeholder="Hello there!")
                        voice = gr.Dropdown(list(installed_voices()), value="espeak", label="voice",
                                            scale=1)   # only the voices installed here
                    with gr.Accordion("controls", open=True):
                        with gr.Row():
                            size = gr.Radio(list(SIZES), value=DEFAULT_SIZE, label="output size (px)")
                            seed = gr.Number(0, label="seed", precision=0, minimum=0)
                        with gr.Row():
                            motion_scale = gr.Slider(0, 2, 1, step=0.1, label="head motion")
                            still = gr.Checkbox(False, label="still head")
                        with gr.Row():
                            intensity = gr.Slider(0, 3, 1, step=0.1, label="expression intensity")
                            blink_rate = gr.Slider(0, 40, 15, step=1, label="blinks per minute")
                        with gr.Row():
                            yaw, pitch, roll = (gr.Slider(*POSE_LIMITS[k], 0, step=1, label=f"{k} (°)")
                                                for k in ("yaw", "pitch", "roll"))
                    button = gr.Button("Generate", variant="primary")
                with gr.Column():
                    video = gr.Video(label="talking video", elem_id="video", height=400)
                    files = gr.File(label="downloads: video and ARKit curves (JSON)",
                                    file_count="multiple")
                    plot = gr.LinePlot(x="time (s)", y="weight", color="curve", y_lim=[0, 1],
                                       title="ARKit curves", show_label=False, height=320,
                                       elem_id="curves")  # label off: Gradio clips the legend under one
            gr.Examples([[_example_portrait(), str(SPEECH_EXAMPLE), ""],
                         [_example_portrait(), None, TEXT_EXAMPLE]],
                        inputs=[portrait, speech, text], cache_examples=False,
                        example_labels=["astronaut, bundled speech", "astronaut, typed text"])
            button.click(generate, [portrait, speech, text, size, voice, seed, still, motion_scale,
                                    intensity, blink_rate, yaw, pitch, roll], [video, files, plot],
                         show_progress_on=video)
        for tab in TABS:      # the other tabs, one module each (ui/tab_*.py)
            tab.build()
    return demo


def launch(host: str = "127.0.0.1", port: int = 7860, *, block: bool = True) -> gr.Blocks:
    """Serve the page at http://host:port, one generation at a time; ``block=False`` returns
    at once (the server runs in a thread; stop it with ``.close()``)."""
    demo = build().queue(default_concurrency_limit=1, max_size=8)
    demo.launch(server_name=host, server_port=port, share=False, show_error=True,
                max_file_size=f"{MAX_AUDIO_MB}mb", prevent_thread_lock=not block, quiet=not block)
    return demo
