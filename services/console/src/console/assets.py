"""The console's static files, read once at start: each is served under a name that carries a
hash of its content (``console.3f2a1b9c0d7e.css``), so a browser may keep it for a year and
never ask again, and a changed file is a new URL. Each is kept gzip-compressed too, for the
browsers that accept it (every one does)."""

import gzip
import hashlib
import mimetypes
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

HASH_CHARS = 12
# Served under its versioned name: the content at that URL never changes.
IMMUTABLE = "public, max-age=31536000, immutable"
# Served under its plain name (an old page, a bookmark): kept, but asked about each time.
REVALIDATE = "public, no-cache"
COMPRESSIBLE = ("text/", "application/javascript", "application/json", "image/svg+xml",
                "application/manifest+json")  # fmt: skip


@dataclass(frozen=True)
class Asset:
    name: str  # as in the folder: console.css
    versioned: str  # console.3f2a1b9c0d7e.css
    content: bytes
    gzipped: bytes | None  # None: not worth compressing (an image already compressed)
    media_type: str

    @property
    def etag(self) -> str:
        return f'"{self.versioned}"'


def versioned_name(name: str, content: bytes) -> str:
    digest = hashlib.sha256(content).hexdigest()[:HASH_CHARS]
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{digest}.{suffix}" if dot else f"{name}.{digest}"


def media_type_of(name: str) -> str:
    if name.endswith(".webmanifest"):
        return "application/manifest+json"
    guessed, _ = mimetypes.guess_type(name)
    media_type = guessed or "application/octet-stream"
    return f"{media_type}; charset=utf-8" if media_type.startswith("text/") else media_type


def asset(name: str, content: bytes) -> Asset:
    media_type = media_type_of(name)
    compressible = media_type.startswith(COMPRESSIBLE)
    return Asset(
        name=name,
        versioned=versioned_name(name, content),
        content=content,
        gzipped=gzip.compress(content, compresslevel=9, mtime=0) if compressible else None,
        media_type=media_type,
    )


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header takes gzip (``gzip;q=0`` refuses it)."""
    for part in (accept_encoding or "").lower().split(","):
        coding, _, parameters = part.partition(";")
        if coding.strip() not in ("gzip", "x-gzip"):
            continue
        name, _, quality = parameters.partition("=")
        if name.strip() != "q":
            return True
        try:
            return float(quality) > 0
        except ValueError:
            return False
    return False


class Assets:
    """Every file of a folder (not its subfolders), by plain and by versioned name."""

    def __init__(self, files: Iterable[tuple[str, bytes]]) -> None:
        self._by_name: dict[str, Asset] = {}
        self._by_versioned: dict[str, Asset] = {}
        for name, content in files:
            found = asset(name, content)
            self._by_name[name] = found
            self._by_versioned[found.versioned] = found

    @classmethod
    def of_folder(cls, folder: Path) -> "Assets":
        return cls((p.name, p.read_bytes()) for p in sorted(folder.iterdir()) if p.is_file())

    def url(self, name: str) -> str:
        """``/static/<versioned name>``; KeyError for a file that is not there, so a template
        naming a missing file fails when it is rendered, not in a browser."""
        return f"/static/{self._by_name[name].versioned}"

    def find(self, requested: str) -> tuple[Asset, bool] | None:
        """The file asked for, and whether it was asked for by its versioned name."""
        if requested in self._by_versioned:
            return self._by_versioned[requested], True
        if requested in self._by_name:
            return self._by_name[requested], False
        return None

    def __iter__(self) -> Iterator[Asset]:
        return iter(self._by_name.values())
