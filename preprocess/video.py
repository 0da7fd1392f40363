"""The video handler: facts and a representative-frame thumbnail through PyAV.

PyAV is FFmpeg's demuxers and decoders inside the `av` wheel (no system ffmpeg needed):
mp4, mov, mkv, webm, avi, ... with H.264, H.265, VP8/9, AV1, MPEG-4 and the rest FFmpeg
decodes. FFmpeg reads through `Reader.file()`, a seekable file doing ranged reads of the
source a window at a time: only the container's index and the packets around the frames
looked at are fetched, and memory does not grow with the file's size.

`metadata.system` gets, as ffprobe reports them: `duration` (seconds), `fps` (average frame
rate), `frames` (the container's count; for formats that keep none, such as Matkroska and
WebM, duration x fps), `codec` (the video decoder's name), `width` / `height` (as stored),
`rotation` (the display matrix: degrees counter-clockwise, as ffprobe's side data shows it),
`bitRate` (bits per second, the whole file), `container` (FFmpeg's demuxer name) and
`audio` (`codec`, `channels`, `sampleRate` of the first audio stream, or null).

With `video_preview`, also a 360p H.264 MP4 preview (preview.py), read front to back.

The thumbnail is a representative frame: the frame at 10% of the duration (the first
reference frame from there: frames nothing depends on are skipped on the way, as a player
scrubs), or at 25% or 50% if that one is blank (black, white or flat: fades, title cards),
turned upright by the rotation.
"""

from __future__ import annotations

import posixpath

import av
from av.error import FFmpegError
from PIL import ImageStat

from .errors import CorruptVideo, EmptyFile, NotAVideo, NoVideoStream, UnsupportedVideo
from .options import Options, Outcome
from .preview import make_preview
from .source import Reader
from .thumbnail import from_frame

SEEK_FRACTIONS = (0.1, 0.25, 0.5)  # of the duration: where a representative frame is looked for
BLANK_LUMA = 20  # a frame whose mean luma is within this of black or white is blank...
FLAT_STDDEV = 10.0  # ...and so is one whose luma varies less than this
_ATTACHED_PIC = 0x400  # AV_DISPOSITION_ATTACHED_PIC: cover art, not the video


def handle(reader: Reader, outcome: Outcome, options: Options) -> None:
    system = outcome.system
    mimetype = system["mimetype"]
    if reader.size == 0:
        raise EmptyFile("empty file (0 bytes)")
    if not system["isBinary"]:
        name = posixpath.basename(reader.source.name)
        raise NotAVideo(f"not a video: {name} holds {mimetype} content")
    try:
        container = av.open(reader.file(), mode="r", metadata_errors="ignore")
    except FFmpegError as error:
        raise CorruptVideo(f"damaged video ({mimetype}): {_reason(error)}") from None
    with container:
        stream = _video_stream(container)
        system.update(facts(container, stream))
        if stream is None:
            audio = " (audio only)" if container.streams.audio else ""
            raise NoVideoStream(f"no video stream in this {mimetype} file{audio}")
        if stream.codec_context is None or not _decodable(stream):
            name = stream.codec_context.name if stream.codec_context is not None else "unknown"
            raise UnsupportedVideo(f"unsupported video codec ({name}): no decoder for it here")
        _check_complete(container, reader.size)
        stream.thread_type = "AUTO"  # frame and slice threads, as ffmpeg decodes
        try:
            # On the way to a seek point only reference frames need decoding (as a player
            # scrubbing does): the frame shown is the first one at or after it.
            stream.codec_context.skip_frame = "NONREF"
            frame = representative_frame(container, stream, system.get("duration"))
        except CorruptVideo:
            stream.codec_context.skip_frame = "DEFAULT"  # a codec whose every frame is "non-ref"
            frame = representative_frame(container, stream, system.get("duration"))
        rotation = _rotation(frame)
        system["rotation"] = rotation
        if options.thumbnails:
            outcome.thumbnail = from_frame(
                frame.to_image(), size=options.thumbnail_size, format=options.thumbnail_format,
                quality=options.thumbnail_quality, rotate=rotation,
            )
    if options.video_preview:
        outcome.preview = make_preview(reader.file(), rotation=rotation)


def facts(container: av.container.InputContainer, stream) -> dict:
    """What the container says about itself and its streams; nothing decoded."""
    duration = None
    if stream is not None and stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / av.time_base
    system: dict = {
        "container": container.format.name,
        "duration": round(duration, 3) if duration else None,
        "bitRate": container.bit_rate or None,
        "audio": _audio(container),
    }
    if stream is not None:
        codec = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        frames = stream.frames or (round(duration * fps) if duration and fps else None)
        found = {
            "width": codec.width if codec is not None else None,
            "height": codec.height if codec is not None else None,
            "fps": round(fps, 3) if fps else None,
            "frames": frames,
            "codec": _codec_name(codec),
        }
        system.update({key: value for key, value in found.items() if value})
    return system


def _check_complete(container, size: int | None) -> None:
    """A truncated file whose index survived (MP4 with its index first): the index points
    past the end."""
    if size is None:
        return
    end = 0
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries):
            last = entries[len(entries) - 1]
            end = max(end, last.pos + last.size)
    if end > size:
        raise CorruptVideo(f"truncated video: the file ends at byte {size}, its index reaches byte {end}")


def representative_frame(container, stream, duration: float | None):
    """The first frame at 10% (then 25%, 50%) of the duration that is not blank; else the
    least blank one seen; the first frame when the duration is unknown."""
    best, best_score, error = None, -1.0, None
    points = [duration * f for f in SEEK_FRACTIONS] if duration else [None]
    for seconds in points:
        try:
            frame = _frame_at(container, stream, seconds)
        except FFmpegError as failure:
            error = failure
            continue
        if frame is None:
            continue
        score, blank = _interest(frame)
        if not blank:
            return frame
        if score > best_score:
            best, best_score = frame, score
    if best is None and duration:  # seeking found nothing: read from the start
        try:
            best = _frame_at(container, stream, None)
        except FFmpegError as failure:
            error = failure
    if best is None:
        detail = f": {_reason(error)}" if error is not None else ""
        raise CorruptVideo(f"truncated or damaged video: no frame could be decoded{detail}")
    return best


def _frame_at(container, stream, seconds: float | None):
    """The frame shown at `seconds` (as `ffmpeg -ss` finds it: seek to the key frame before,
    decode forward), or the first frame when None."""
    if seconds is None:
        for frame in container.decode(stream):
            return frame
        return None
    start = stream.start_time or 0
    container.seek(start + int(seconds / stream.time_base), stream=stream, backward=True)
    target = seconds + float(start * stream.time_base)
    last = None
    for frame in container.decode(stream):
        if frame.time is None or frame.time >= target - 1e-3:
            return frame
        last = frame
    return last


def _interest(frame) -> tuple[float, bool]:
    """(luma standard deviation, is blank) of a frame, on a small grey copy."""
    small = frame.reformat(width=64, height=36, format="gray").to_image()
    stat = ImageStat.Stat(small)
    mean, spread = stat.mean[0], stat.stddev[0]
    blank = mean < BLANK_LUMA or mean > 255 - BLANK_LUMA or spread < FLAT_STDDEV
    return spread, blank


def _rotation(frame) -> int:
    """The display matrix's rotation in degrees counter-clockwise, a multiple of 90."""
    value = getattr(frame, "rotation", 0) or 0
    return int(round(value / 90.0)) * 90 % 360


def _video_stream(container):
    for stream in container.streams.video:
        if not stream.disposition & _ATTACHED_PIC:
            return stream
    return None


def _decodable(stream) -> bool:
    try:
        av.codec.Codec(stream.codec_context.name, "r")
    except (FFmpegError, ValueError, av.codec.codec.UnknownCodecError):
        return False
    return True


def _audio(container) -> dict | None:
    if not container.streams.audio:
        return None
    codec = container.streams.audio[0].codec_context
    return {"codec": _codec_name(codec), "channels": codec.channels, "sampleRate": codec.sample_rate}


def _reason(error: BaseException | None) -> str:
    if error is None:
        return ""
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _codec_name(codec) -> str | None:
    """The codec's name as ffprobe gives it (`mp3`, not the decoder `mp3float`)."""
    if codec is None:
        return None
    found = getattr(codec, "codec", None)
    return getattr(found, "canonical_name", None) or codec.name
