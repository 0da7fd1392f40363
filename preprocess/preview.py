"""A small browser-playable preview of a video: H.264 (yuv420p) and AAC in an MP4 whose index
comes first (it plays while it downloads), `height` pixels high (360 by default, never
enlarged), with the source's display rotation kept in its matrix (browsers honour it).

The source is read once, front to back, through ranged reads (`Reader.file()`); the preview is
written to a temporary file, never held in memory: `Preview.path`, which the caller removes
(`Preview.remove()`, or `Outcome.close()`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from .errors import CorruptVideo

PREVIEW_HEIGHT = 360  # pixels
AUDIO_RATE = 48000  # Hz


@dataclass(frozen=True)
class Preview:
    path: str  # a temporary file
    extension: str = "mp4"
    content_type: str = "video/mp4"

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def make_preview(file, *, rotation: int = 0, height: int = PREVIEW_HEIGHT) -> Preview:
    """Transcode the video in the seekable `file` into a temporary preview MP4."""
    from av.error import FFmpegError  # PyAV only where videos are met

    handle, path = tempfile.mkstemp(prefix="syncd-preview-", suffix=".mp4")
    os.close(handle)
    try:
        _transcode(file, path, rotation=rotation, height=height)
    except FFmpegError as error:
        os.unlink(path)
        raise CorruptVideo(f"cannot make the video preview: {error}") from None
    except BaseException:
        os.unlink(path)
        raise
    return Preview(path)


def _transcode(file, path: str, *, rotation: int, height: int) -> None:
    import av

    file.seek(0)
    with av.open(file, mode="r", metadata_errors="ignore") as source, \
            av.open(path, mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        video = next(s for s in source.streams.video if not s.disposition & 0x400)
        video.thread_type = "AUTO"
        width_in, height_in = video.codec_context.width, video.codec_context.height
        out_height = min(height, height_in) // 2 * 2
        out_width = max(2, round(width_in * out_height / height_in) // 2 * 2)
        rate = video.average_rate or video.guessed_rate or 25
        encoder = out.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "28"})
        encoder.width, encoder.height, encoder.pix_fmt = out_width, out_height, "yuv420p"
        encoder.codec_context.time_base = video.time_base
        if rotation:
            encoder.set_display_rotation(rotation)
        audio = source.streams.audio[0] if source.streams.audio else None
        sound = resampler = None
        if audio is not None:
            sound = out.add_stream("aac", rate=AUDIO_RATE)
            sound.layout = "stereo"
            resampler = av.AudioResampler(format=sound.codec_context.format.name, layout="stereo",
                                          rate=AUDIO_RATE)
        streams = [video] if audio is None else [video, audio]
        for packet in source.demux(*streams):
            for frame in packet.decode():
                if packet.stream is video:
                    small = frame.reformat(width=out_width, height=out_height, format="yuv420p")
                    small.pts, small.time_base = frame.pts, frame.time_base
                    for encoded in encoder.encode(small):
                        out.mux(encoded)
                else:
                    for chunk in resampler.resample(frame):
                        chunk.pts = None
                        for encoded in sound.encode(chunk):
                            out.mux(encoded)
        for encoded in encoder.encode():
            out.mux(encoded)
        if sound is not None:
            for chunk in resampler.resample(None):
                chunk.pts = None
                for encoded in sound.encode(chunk):
                    out.mux(encoded)
            for encoded in sound.encode():
                out.mux(encoded)
