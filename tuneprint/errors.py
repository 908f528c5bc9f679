"""One exception root for tuneprint; the CLI maps these to exit codes, the HTTP layer to 4xx."""


class TuneprintError(Exception):
    """Base class of every error tuneprint raises on purpose."""


class AudioError(TuneprintError):
    """The audio cannot be used: unreadable, empty, too short or silent."""


class UnreadableAudioError(AudioError):
    """No decoder could read the file (not audio, truncated, unknown codec)."""


class TooShortError(AudioError):
    """The clip is shorter than the minimum a query or a track needs."""


class SilentAudioError(AudioError):
    """The audio holds no signal above the silence floor."""


class SampleRateError(AudioError):
    """The file's own sample rate is outside what tuneprint decodes (below 8 kHz, or absurdly high)."""


class LibraryError(TuneprintError):
    """The library folder is missing, damaged or asked for something it lacks."""


class MismatchError(LibraryError):
    """An artifact (index, checkpoint) does not match what loads it."""


class NotFoundError(LibraryError):
    """A song id or file that was asked for does not exist."""


class CheckpointError(TuneprintError):
    """A model checkpoint is missing, damaged or of another format version."""


class BusyError(LibraryError):
    """Another process is writing to the library; retry when it is done."""


class DamagedLibraryError(LibraryError):
    """A file of the library folder cannot be read; `tuneprint doctor` says what to do."""
