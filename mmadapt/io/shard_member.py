"""One member of a tar file (a WebDataset shard), read in place: the media source a shard-backed sample holds.

A dataset read from WebDataset shards (format ``webdataset``, :mod:`mmadapt.data.formats.webdataset`) indexes
each tar file once, from its headers only (``tarfile``: ``offset_data`` and ``size`` of every member), and
gives each sample a :class:`ShardMember` where a loose-file dataset gives a path. Every loader of
:mod:`mmadapt.io` that reads a sample's media (images, video, audio, point clouds, dense label files) takes a
:class:`MediaSource`, either kind::

    member = ShardMember("data/shards/shard-000000.tar", "000007.image_path.jpg", offset=5632, size=1841)
    str(member)        # "data/shards/shard-000000.tar:000007.image_path.jpg", what error messages name
    member.suffix      # ".jpg", what the extension checks see
    member.read()      # the member's bytes: one os.pread on the shard's cached file descriptor

The descriptor of each shard is opened once per process and cached under the process id, so the forked
DataLoader workers (:mod:`mmadapt.data.loader`) never share a file offset with their parent: each opens its
own the first time it reads (``pread`` does not move the offset anyway). A member is a small frozen value:
it pickles, hashes and compares like the path it stands for.
"""

from __future__ import annotations

import abc
import io
import os
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO, Union

from mmadapt.errors import DataError

__all__ = ["MediaBlob", "MediaSource", "ShardMember", "media_source", "open_media", "read_head", "source_name"]


class MediaBlob(abc.ABC):
    """A sample's media that is not a file of its own but bytes inside a larger store — a member of a tar
    shard (:class:`ShardMember`), a cell of a Hugging Face dataset
    (:class:`~mmadapt.data.formats.hf_dataset.DatasetCell`). What every loader needs of it: its ``size`` and
    ``suffix`` (the file checks), ``str()`` (messages) and its bytes (``read``; ``head`` for the magic bytes)."""

    name: str  # the file name it was stored under (its extension, for the loaders' checks)
    size: int

    @property
    def suffix(self) -> str:
        """``name``'s last extension (``".jpg"`` of ``"000007.image_path.jpg"``), as ``Path.suffix``."""
        return PurePosixPath(self.name).suffix

    @abc.abstractmethod
    def read(self) -> bytes:
        """All the bytes; a one-line :class:`DataError` naming the blob when they cannot be read."""

    def head(self, n: int) -> bytes:
        """The first ``n`` bytes (fewer if it is shorter)."""
        return self.read()[:n]


@dataclass(frozen=True)
class ShardMember(MediaBlob):
    """The bytes ``[offset, offset + size)`` of the tar file ``shard``, stored there as member ``name``."""

    shard: str
    name: str
    offset: int
    size: int

    def __str__(self) -> str:
        return f"{self.shard}:{self.name}"

    def read(self) -> bytes:
        """The member's bytes. Raises a one-line :class:`DataError` naming ``shard:name`` when the shard
        cannot be read or ends before the member does (a truncated shard)."""
        try:
            data = os.pread(_descriptor(self.shard), self.size, self.offset)
        except OSError as exc:
            raise DataError(f"{self}: cannot read shard ({exc.strerror or exc})") from None
        if len(data) != self.size:
            raise DataError(f"{self}: truncated shard ({len(data)} of the member's {self.size} bytes are there)")
        return data

    def head(self, n: int) -> bytes:
        return os.pread(_descriptor(self.shard), min(n, self.size), self.offset)


#: what the media loaders of :mod:`mmadapt.io` read: a file path, or media stored inside something larger
MediaSource = Union[str, os.PathLike, MediaBlob]

_DESCRIPTORS: dict[tuple[int, str], int] = {}  # (process id, shard path) -> read-only file descriptor


def _descriptor(shard: str) -> int:
    key = (os.getpid(), shard)
    fd = _DESCRIPTORS.get(key)
    if fd is None:
        fd = _DESCRIPTORS[key] = os.open(shard, os.O_RDONLY)  # not inherited by exec'd children (PEP 446)
    return fd


def source_name(source: MediaSource) -> str:
    """How messages name ``source``: the path as given, or ``"shard.tar:member"``."""
    return str(source) if isinstance(source, MediaBlob) else os.fspath(source)


def media_source(path: MediaSource) -> str | MediaBlob:
    """What a training example holds for a sample's media: the path as a string, or the blob itself (a
    string ``"shard.tar:member"`` would read as a file name)."""
    return path if isinstance(path, MediaBlob) else os.fspath(path)


def read_head(source: MediaSource, n: int) -> bytes:
    """The first ``n`` bytes of ``source`` (fewer if it is shorter), to sniff a format by its magic bytes.
    Raises OSError for an unreadable file or shard."""
    if isinstance(source, MediaBlob):
        return source.head(n)
    with open(source, "rb") as f:
        return f.read(n)


def open_media(source: MediaSource) -> str | BinaryIO:
    """What a decoder opens: the path string of a file, an in-memory binary file of a blob's bytes
    (PIL, soundfile, numpy, h5py, scipy, decord and PyAV all accept a file object)."""
    if isinstance(source, MediaBlob):
        return io.BytesIO(source.read())
    return os.fspath(source)
