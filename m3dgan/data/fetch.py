"""Download, verify, unpack and convert the paper's published pix2pix data sets.

For users with internet: ``fetch("edges2shoes")`` gets the official archive, checks it, unpacks it
safely and converts it with :func:`m3dgan.data.aligned.convert_aligned` into
``paths.dataset_dir(name)``. The archives are large (edges2shoes ~2 GB), so:

- downloads go to ``<dest>/<name>.tar.gz.part`` and **resume** with an HTTP ``Range`` request after
  an interruption (a server that ignores Range and answers 200 restarts the file cleanly);
- the finished archive is kept in ``dest`` (default ``$M3DGAN_HOME/downloads``), so converting again
  at another ``image_size`` or after ``force`` needs no new download;
- the archive's sha256 is checked against ``expected_sha256`` / :data:`KNOWN_SHA256` / a digest
  recorded by an earlier download. The project could not download the real archives to pin their
  digests, so the first download of each records its digest in ``<dest>/<name>.sha256`` (trust on
  first use) and prints it; later downloads must match it.

Extraction rejects members with absolute paths or ``..`` and links pointing outside, and uses
tarfile's ``"data"`` filter where Python has it.
"""

from __future__ import annotations

import http.client
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from m3dgan import paths
from m3dgan.data import aligned, store
from m3dgan.errors import DataError

OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
# None: digest not pinned by the project (see module docstring); fill in once known.
KNOWN_SHA256: dict[str, str | None] = {"edges2shoes": None, "night2day": None}
CHUNK = 1 << 20
TIMEOUT_S = 60
# tarfile.FilterError exists where the "data" extraction filter does (3.12+, recent backports)
_FILTER_ERROR: type[Exception] | tuple = getattr(tarfile, "FilterError", ())
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def downloads_dir() -> Path:
    return paths.home() / "downloads"


def fetch(
    name: str,
    dest: Path | None = None,
    *,
    url: str | None = None,
    expected_sha256: str | None = None,
    image_size: int = aligned.DEFAULT_IMAGE_SIZE,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Fetch a published aligned data set and return its converted folder.

    ``url`` overrides the official address (mirrors, tests) and then any ``name`` is allowed;
    ``expected_sha256`` overrides the known digest. ``force`` re-converts even when a converted
    folder exists (the kept archive is reused when its digest still checks out).
    """
    if url is None and name not in KNOWN_SHA256:
        raise DataError(f"unknown data set {name!r}; fetchable ones are {sorted(KNOWN_SHA256)}")
    url = url or OFFICIAL_URL.format(name=name)
    out = paths.dataset_dir(name)
    if not force and _converted_ok(out, image_size, limit):
        return out
    dest = Path(dest) if dest is not None else downloads_dir()
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{name}.tar.gz"
    if not archive.is_file():
        download(url, archive, progress=progress)
    digest = check_sha256(archive, _expected_digest(name, dest, expected_sha256))
    extract_dir = dest / f"{name}.extracted"
    shutil.rmtree(extract_dir, ignore_errors=True)
    try:
        safe_extract(archive, extract_dir)
        root = aligned.find_aligned_root(extract_dir)
        if root is None:
            raise DataError(f"{archive}: no train/, val/ or test/ folder inside the archive")
        provenance = {"url": url, "archive_sha256": digest, "archive": str(archive)}
        return aligned.convert_aligned(
            root, out, image_size, limit, name=name, provenance=provenance, progress=progress
        )
    finally:
        shutil.rmtree(extract_dir, ignore_errors=True)


def _converted_ok(out: Path, image_size: int, limit: int | None) -> bool:
    """True when ``out`` holds an intact conversion made with the same size and limit."""
    if not (out / store.MANIFEST).is_file():
        return False
    try:
        manifest = store.verify(out)
    except DataError:
        return False
    return manifest.image_size == image_size and manifest.provenance.get("limit") == limit


def _sha256_record(name: str, dest: Path) -> Path:
    return dest / f"{name}.sha256"


def _expected_digest(name: str, dest: Path, given: str | None) -> str | None:
    """The digest to check against: given > pinned in KNOWN_SHA256 > recorded on first download."""
    if given:
        return given.strip().lower()
    if KNOWN_SHA256.get(name):
        return KNOWN_SHA256[name]
    record = _sha256_record(name, dest)
    if record.is_file():
        text = record.read_text().split()
        return text[0].lower() if text else None
    return None


def check_sha256(archive: Path, expected: str | None) -> str:
    """Return the archive's digest; on mismatch remove the archive and raise DataError.

    With nothing to check against, record the digest next to the archive and print it.
    """
    digest = store.sha256_file(archive)
    if expected is None:
        name = archive.name.removesuffix(".tar.gz")
        _sha256_record(name, archive.parent).write_text(f"{digest}  {archive.name}\n")
        print(f"{archive.name}: sha256 {digest} (no pinned digest; recorded for later checks)")
        return digest
    if digest != expected:
        archive.unlink(missing_ok=True)
        raise DataError(
            f"{archive}: sha256 {digest} does not match the expected {expected}; "
            "the damaged download was removed, run the fetch again"
        )
    return digest


# ---------------------------------------------------------------------------------------------
# Resumable download


def download(url: str, archive: Path, *, progress: bool = True) -> Path:
    """Download ``url`` to ``archive`` via ``archive.part``, resuming a partial file if present."""
    part = archive.with_name(archive.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    response = _open(url, part, offset)
    if response is None:  # the server says the .part is already complete
        part.replace(archive)
        return archive
    with response:
        offset, total = _resume_point(response, offset, url)
        _stream(response, part, offset, total, url, progress)
    size = part.stat().st_size
    if total is not None and size != total:
        raise DataError(
            f"download of {url} stopped at {size} of {total} bytes; run again to resume"
        )
    part.replace(archive)
    return archive


def _open(url: str, part: Path, offset: int) -> http.client.HTTPResponse | None:
    """Open the request (with Range when resuming); None when the part is already whole."""
    headers = {"User-Agent": "m3dgan-fetch"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _total_from_content_range(exc.headers.get("Content-Range", ""))
            if total == offset:
                return None
            part.unlink()  # our partial file is longer than the remote one: start over
            return _open(url, part, 0)
        raise DataError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DataError(f"cannot download {url}: {exc.reason}") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise DataError(f"cannot download {url}: {exc}") from exc


def _total_from_content_range(header: str) -> int | None:
    match = re.search(r"/(\d+)", header or "")
    return int(match.group(1)) if match else None


def _resume_point(response, offset: int, url: str) -> tuple[int, int | None]:
    """Where the body starts in the file and the full size, from a 206 or a 200 answer."""
    if response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != offset:
            raise DataError(
                f"{url}: server resumed at an unexpected position "
                f"({response.headers.get('Content-Range')!r}, wanted byte {offset}); "
                "delete the .part file and run again"
            )
        total = match.group(3)
        return offset, None if total == "*" else int(total)
    length = response.headers.get("Content-Length")
    return 0, int(length) if length and length.isdigit() else None  # 200: a full body


def _stream(response, part: Path, offset: int, total: int | None, url: str, progress: bool):
    """Append (206) or write afresh (200) the response body to the part file."""
    mode = "ab" if offset else "wb"
    with (
        open(part, mode) as handle,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            desc=part.name.removesuffix(".tar.gz.part"),
            disable=not progress,
        ) as bar,
    ):
        try:
            while block := response.read(CHUNK):
                handle.write(block)
                bar.update(len(block))
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(
                f"download of {url} interrupted at {handle.tell()} bytes ({exc}); "
                "run again to resume"
            ) from exc


# ---------------------------------------------------------------------------------------------
# Safe extraction


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why a member could write outside the extraction folder, or None if it is safe."""
    path = PurePosixPath(member.name)
    if (
        member.name.startswith(("/", "\\"))
        or path.is_absolute()
        or re.match(r"^[A-Za-z]:", member.name)
    ):
        return "absolute path"
    if ".." in path.parts:
        return "'..' in path"
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in target.parts:
            return f"link to {member.linkname!r}"
    if member.isdev():
        return "device file"
    return None


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract a tar archive into ``dest``; refuse the whole archive if any member is unsafe."""
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                reason = _unsafe_reason(member)
                if reason:
                    raise DataError(f"{archive}: refusing unsafe member {member.name!r} ({reason})")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # older Python: members were checked above
                tar.extractall(dest, members=members)
    except _FILTER_ERROR as exc:  # the "data" filter caught something our checks missed
        raise DataError(f"{archive}: refusing unsafe member ({exc})") from exc
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DataError(f"{archive}: damaged or not a tar archive ({exc})") from exc
    return dest
