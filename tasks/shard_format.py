"""The tar shard format, in one place: how member names map to (key, extension), which members
are safe to read, which extensions are images, reading a whole shard or chosen keys, writing a
training shard, and reading one image by the byte range its index recorded.

Curation (``tasks.shards``), recaption (``tasks.captioning``) and build-shards
(``tasks.shard_writer``) all go through here, so a key means the same thing everywhere: the member
path without its extension, sub-folders included (``sub/000001.jpg`` -> ``sub/000001``). Members
are read into memory, never extracted, so a hostile name (``../x``, ``/etc/x``), a link or a
device cannot touch the filesystem: such members are refused with the reason.
"""
from __future__ import annotations

import os
import posixpath
import tarfile
from typing import Callable, Iterable

import webdataset as wds

# every image extension curation accepts, in preference order when a key has several
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")

ReadErrors = (tarfile.TarError, OSError, EOFError)


def split_key(name: str) -> tuple[str, str]:
    """``dir/000001.jpg`` -> (``dir/000001``, ``jpg``); the extension is lower-cased."""
    d, base = posixpath.split(posixpath.normpath(name))
    stem, _, ext = base.partition(".")
    return (posixpath.join(d, stem) if d else stem), ext.lower()


def unsafe_reason(m: tarfile.TarInfo) -> str | None:
    """Why a member must not be read, or None. Refuses what extraction would make dangerous."""
    name = m.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"path escapes the shard: {name!r}"
    if m.issym() or m.islnk():
        return f"link member {name!r} -> {m.linkname!r}"
    if not m.isfile():
        return None if m.isdir() else f"special member {name!r} (type {m.type!r})"
    return None


def pick_image(files: dict[str, bytes]) -> tuple[str, bytes] | None:
    """(extension, bytes) of a key's image member, by :data:`IMAGE_EXTS` order; None if it has none."""
    for ext in IMAGE_EXTS:
        if ext in files:
            return ext, files[ext]
    return None


def read_tar(tar_path: str, keep: Callable[[str, str], bool] | None = None, max_member_bytes: int | None = None
             ) -> tuple[dict[str, dict[str, bytes]], list[tuple[str, str]], list[str]]:
    """``({key: {ext: bytes}}, refused, errors)`` of the members ``keep(key, ext)`` accepts (all if
    None), in tar order. ``refused``: (member name, reason) of unsafe members, of members larger
    than ``max_member_bytes`` (a gzip-bombed shard claims gigabytes in a few kilobytes: such a
    member is skipped, never read into memory) and of every repeat of a member name (the caller
    quarantines the whole key); ``errors``: damage to the shard.
    A truncated tar yields the members before the damage; a key cut mid-member gets an
    ``_truncated`` entry so the caller can quarantine it."""
    entries: dict[str, dict[str, bytes]] = {}
    refused: list[tuple[str, str]] = []
    try:
        tf = tarfile.open(tar_path, mode="r:*")
    except ReadErrors as e:
        return entries, refused, [f"cannot open tar: {type(e).__name__}: {e}"]
    with tf:
        while True:
            try:
                m = tf.next()
            except ReadErrors as e:
                return entries, refused, [f"tar truncated or corrupt after {len(entries)} keys: "
                                          f"{type(e).__name__}: {e}"]
            if m is None:
                return entries, refused, []
            key, ext = split_key(m.name)
            if keep is not None and not keep(key, ext):
                continue
            why = unsafe_reason(m)
            if not why and max_member_bytes is not None and m.size > max_member_bytes:
                why = f"member {m.name!r} has {m.size} bytes > curate.max_member_bytes {max_member_bytes}"
            if why:
                refused.append((m.name, why))
            if why or m.isdir():
                continue
            if ext in entries.get(key, {}):
                refused.append((m.name, f"duplicate member {m.name!r}: a second copy would replace "
                                        "the first, so neither is used"))
                continue
            try:
                f = tf.extractfile(m)
                data = f.read() if f else b""
                if len(data) != m.size:
                    raise EOFError(f"member {m.name!r} has {len(data)} of {m.size} bytes")
            except ReadErrors as e:
                entries.setdefault(key, {}).setdefault("_truncated", b"")
                return entries, refused, [f"tar truncated or corrupt in member {m.name!r}: "
                                          f"{type(e).__name__}: {e}"]
            entries.setdefault(key, {})[ext] = data


def read_images(tar_path: str, keys: Iterable[str]) -> tuple[dict[str, tuple[str, bytes]], dict[str, str]]:
    """``({key: (ext, bytes)}, {key: why missing})`` for the chosen keys of one shard: each key's
    image member in :data:`IMAGE_EXTS` order; unsafe members refused with the reason."""
    want = set(keys)
    entries, refused, errors = read_tar(tar_path, lambda k, e: k in want and e in IMAGE_EXTS)
    why: dict[str, str] = {}
    for name, reason in refused:
        why.setdefault(split_key(name)[0], f"refused: {reason}")
    found = {k: img for k, files in entries.items() if k not in why and (img := pick_image(files))}
    for k in sorted(want - set(found)):
        why.setdefault(k, f"cannot read tar {tar_path}: {errors[0]}" if errors
                       else f"no image member for key {k!r} in {tar_path}")
    return found, why


def write_tar(path: str, samples: Iterable[dict]) -> dict[str, tuple[int, int, str]]:
    """Write samples with webdataset's TarWriter (fixed mtime/owner: reproducible bytes) to a
    temporary file, rename into place, and return ``{key: (offset, size, ext)}`` of each image."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f, wds.TarWriter(f, mtime=0.0, user="t2i", group="t2i", mode=0o444) as w:
            for s in samples:
                w.write(s)
    except BaseException:  # a full disk mid-tar: no temporary tar left behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    offsets = {}
    with tarfile.open(tmp, "r:") as tf:
        for m in tf.getmembers():
            key, ext = split_key(m.name)
            if ext in IMAGE_EXTS:
                offsets[key] = (m.offset_data, m.size, ext)
    os.replace(tmp, path)
    return offsets


def read_range(tar: str, offset: int, size: int) -> bytes:
    """One image's bytes by the byte range the index recorded (no tar scan)."""
    with open(tar, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise IOError(f"{tar}: short read at {offset} ({len(data)} of {size} bytes)")
    return data
