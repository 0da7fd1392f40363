"""Why preprocessing could not finish. Each error's message is the reason shown to people
(`metadata.system.etl.errors`, `syncd jobs list`); all of them are permanent: running the
same bytes again gives the same error, so a job that raised one is not retried."""

from __future__ import annotations


class PreprocessError(Exception):
    """The item's bytes could not be preprocessed."""


class EmptyFile(PreprocessError):
    """The file has no bytes at all."""


class NotAnImage(PreprocessError):
    """The file's name says image, but its bytes are something else."""


class UnsupportedImage(PreprocessError):
    """An image in a format that cannot be decoded here."""


class CorruptImage(PreprocessError):
    """The image's bytes are truncated or damaged."""


class ImageTooLarge(PreprocessError):
    """The image has more pixels than allowed: a possible decompression bomb."""


class CorruptVideo(PreprocessError):
    """The video's bytes are truncated or damaged: no container, or no frame decodes."""


class UnsupportedVideo(PreprocessError):
    """A video whose codec no decoder here reads."""


class NoVideoStream(PreprocessError):
    """A media file without a video stream (audio only, subtitles, ...)."""


class NotAVideo(PreprocessError):
    """The file's name says video, but its bytes are something else."""


class OverMemoryBudget(PreprocessError):
    """Decoding the image would take more memory than a job may use (preprocess.memory_mb)."""
