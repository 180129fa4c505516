"""The demo's "a learned person" tab: a ``.puppet`` file (from ``puppetry learn``) and
speech or text in, the person's footage saying it out (``puppetry.person.dub_video``).

A ``.puppet`` keeps where the video it learned from is; on another machine, upload that
video (or any other video of the same person) as the footage.
"""
from __future__ import annotations

import shutil
from dataclasses import replace

import gradio as gr

from puppetry import limits
from puppetry.audio import audio_duration
from puppetry.person import DubJob, dub_video
from puppetry.person.dub import RENDERERS
from puppetry.person.puppet import MAX_PUPPET_BYTES
from puppetry.tts import installed_voices

from . import demo   # its helpers and limits, used at call time (demo imports this module)

MAX_FOOTAGE_MB = limits.SERVICE_MAX_AUDIO_BYTES // limits.MB   # an uploaded footage video, MB


def generate(puppet: str | None, speech: str | None, text: str | None, footage: str | None = None,
             voice: str = "espeak", renderer: str = "neural", progress=gr.Progress()) -> str:
    """The Dub button: file paths and controls -> the dubbed mp4's path. Bad input raises
    ``gr.Error`` with the library's message, naming the upload."""
    # 1. the inputs: a person, speech or text (not both), within the demo's limits
    text = (text or "").strip() or None
    if not puppet:
        raise gr.Error("no person: upload a .puppet file made by `puppetry learn`", print_exception=False)
    demo._check_size(puppet, "person", MAX_PUPPET_BYTES / demo.MB, "learn with a smaller network")
    if (speech is None) == (text is None):
        raise gr.Error("give speech (upload or record) or text to say, not both", print_exception=False)
    if speech is not None:
        demo._check_size(speech, "speech", demo.MAX_AUDIO_MB, "upload a compressed file (mp3, ogg, m4a)")
    elif len(text) > demo.MAX_TEXT_CHARS:
        raise gr.Error(f"the text has {len(text)} characters: the demo says up to "
                       f"{demo.MAX_TEXT_CHARS}; shorten it", print_exception=False)
    if footage:
        demo._check_size(footage, "footage", MAX_FOOTAGE_MB, "upload a shorter or smaller video")
    # 2. the job, and a folder for this request's output
    out = demo._request_folder()
    video = out / "puppetry_person.mp4"
    # 3. the library does the work; its messages name the input and the fix
    try:
        seconds = audio_duration(speech) if speech is not None else 0.0
        if seconds > demo.MAX_SPEECH_S:
            raise ValueError(f"the speech lasts {seconds / 60:.1f} min: the demo takes up to "
                             f"{demo.MAX_SPEECH_S / 60:.0f} min; trim it")
        dub_video(puppet, speech, video, replace(DubJob(), renderer=renderer, voice=voice),
                  video=footage or None, text=text,
                  progress=lambda done, total, stage: progress(done / max(total, 1), desc=stage))
    except (ValueError, OSError, RuntimeError, ImportError) as err:
        shutil.rmtree(out, ignore_errors=True)
        message = demo._uploads_named(str(err), puppet, speech, footage)
        if "--video" in message:                                  # the CLI's words for the upload
            message = message.replace("with --video", "as the footage video")
        raise gr.Error(message, print_exception=False) from None
    return str(video)


def build() -> None:
    """The tab, inside the demo's ``gr.Blocks``."""
    with gr.Tab("a learned person", id="person"):
        gr.Markdown("A person learned from a video of them (`puppetry learn VIDEO -o PERSON.puppet`) "
                    "says new speech over their own footage: only the lower face is re-rendered.")
        with gr.Row():
            with gr.Column():
                puppet = gr.File(label="person (.puppet)", file_types=[".puppet"], type="filepath",
                                 elem_id="puppet")
                speech = gr.Audio(label=f"speech (up to {demo.MAX_SPEECH_S / 60:.0f} min)",
                                  type="filepath", sources=["upload", "microphone"],
                                  elem_id="person_speech")
                with gr.Row():
                    text = gr.Textbox(label="…or text to say", lines=2, scale=3,
                                      max_length=demo.MAX_TEXT_CHARS, placeholder="Hello there!")
                    voice = gr.Dropdown(list(installed_voices()), value="espeak", label="voice", scale=1)
                with gr.Accordion("footage and renderer", open=False):
                    footage = gr.File(label="footage video (default: the video it learned from)",
                                      file_types=["video"], type="filepath")
                    renderer = gr.Radio(list(RENDERERS), value="neural",
                                        label="renderer (warp: the one-shot renderer, to compare)")
                button = gr.Button("Dub", variant="primary")
            with gr.Column():
                video = gr.Video(label="dubbed video", elem_id="person_video", height=400)
        button.click(generate, [puppet, speech, text, footage, voice, renderer], [video],
                     show_progress_on=video)
