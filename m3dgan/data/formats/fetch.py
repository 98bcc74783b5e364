"""Download, verify, unpack and convert the paper's published data sets.

For users with internet: ``fetch("edges2shoes")`` gets the official archive(s), checks them,
unpacks them safely and converts them into ``paths.dataset_dir(name)``, where
``build.ensure_dataset(name)`` finds the result. :data:`PUBLISHED` lists each data set's sources
(URL, archive file name, sha256 when pinned, which members to unpack) and its converter:

- ``edges2shoes``, ``night2day``: pix2pix aligned archives -> :mod:`m3dgan.data.formats.aligned`;
- ``cub``: CUB-200-2011 + Reed et al.'s descriptions (text -> image) ->
  :mod:`m3dgan.data.formats.cub`;
- ``coco-captions``: MS-COCO 2014 captions (image -> text) -> :mod:`m3dgan.data.formats.coco`;
- ``wmt14-en-fr``: Europarl v7 + newstest2014 (text -> text) -> :mod:`m3dgan.data.formats.wmt`;
- ``ljspeech``: LJ Speech 1.1 (text -> speech, one speaker) -> :mod:`m3dgan.data.formats.ljspeech`;
- ``librispeech-clean-100``: LibriSpeech train-clean-100 + test-clean (text <-> speech, domain =
  speaker) -> :mod:`m3dgan.data.formats.librispeech`.

The archives are large (edges2shoes ~2 GB, COCO's photos 19 GB), so:

- downloads go to ``<dest>/<archive>.part`` and **resume** with an HTTP ``Range`` request after
  an interruption (a server that ignores Range and answers 200 restarts the file cleanly);
- finished archives are kept in ``dest`` (default ``$M3DGAN_HOME/downloads``), so converting again
  with other options or after ``force`` needs no new download; an archive put there by hand (a
  host that wants a browser, e.g. Google Drive) is used as it is;
- each archive's sha256 is checked against the one given / pinned in :data:`PUBLISHED` / recorded
  by an earlier download. The project could not download the real archives to pin their digests,
  so the first download of each records its digest in ``<dest>/<archive stem>.sha256`` (trust on
  first use) and prints it; later downloads must match it.

Mirrors: ``url=`` replaces the official address (a string for a one-archive data set, or
``{source key: url}``); the environment variable ``M3DGAN_FETCH_MIRROR`` names a base URL that
holds every archive under its published file name. An explicit ``url`` wins over the mirror.
Where the publisher lists mirrors of its own (openslr.org's US, EU and CN copies),
``Source.mirrors`` holds them and a failed download from the official address goes on with the
next mirror (a partial file resumes there: the copies are byte-identical); an explicit ``url`` or
the environment mirror is used alone.

Extraction (tar, tar.gz, tar.bz2, zip) rejects members with absolute paths or ``..`` and links
pointing outside, and uses tarfile's ``"data"`` filter where Python has it. Zip archives that a
converter reads member by member (COCO's photos) are never unpacked.
"""

from __future__ import annotations

import errno
import http.client
import os
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import yaml
from tqdm import tqdm

from m3dgan import paths
from m3dgan.atomic import FULL_DISK_ERRNOS, output_error, write_text
from m3dgan.config import load_yaml
from m3dgan.data import store
from m3dgan.data.formats import aligned, coco, cub, librispeech, ljspeech, utterances, wmt
from m3dgan.errors import ConfigError, DataError, OutputError

OFFICIAL_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/{name}.tar.gz"
MIRROR_ENV = "M3DGAN_FETCH_MIRROR"
FETCH_KEY = "fetch"  # provenance key holding the conversion options
CHUNK = 1 << 20
TIMEOUT_S = 60
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar", ".zip")
# tarfile.FilterError exists where the "data" extraction filter does (3.12+, recent backports)
_FILTER_ERROR: type[Exception] | tuple = getattr(tarfile, "FilterError", ())
# OSErrors that say writing failed (not that the archive is damaged): an OutputError
_WRITE_ERRNOS = FULL_DISK_ERRNOS | {errno.EROFS}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclass(frozen=True)
class Source:
    """One archive of a published data set."""

    key: str  # what the converter calls it ("archive", "images", "text", "train", ...)
    url: str
    filename: str  # name in the downloads folder, and on a mirror
    sha256: str | None = None  # None: not pinned by the project (see module docstring)
    keep: Callable[[str], bool] | None = None  # members to unpack (None: all)
    unpack: bool = True  # False: the converter reads the archive in place
    mirrors: tuple[str, ...] = ()  # the publisher's own copies, tried in turn after ``url``


Converter = Callable[..., Path]  # (inputs: {key: path}, out, *, name, provenance, progress, **opts)


@dataclass(frozen=True)
class Published:
    """A data set that ``fetch`` can download and convert."""

    name: str
    sources: tuple[Source, ...]
    convert: Converter
    options: dict  # the converter's options and their defaults (``image_size``, ``limit``, ...)
    size: str  # download size, for messages


def _pix2pix(name: str, size: str) -> Published:
    source = Source("archive", OFFICIAL_URL.format(name=name), f"{name}.tar.gz")
    options = {"image_size": aligned.DEFAULT_IMAGE_SIZE, "limit": None}
    return Published(name, (source,), _convert_aligned, options, size)


def _convert_aligned(
    inputs: dict[str, Path], out: Path, *, name: str, provenance: dict, progress: bool, **options
) -> Path:
    root = aligned.find_aligned_root(inputs["archive"])
    if root is None:
        raise DataError(
            f"{provenance['archive']}: no train/, val/ or test/ folder inside the archive"
        )
    return aligned.convert_aligned(
        root, out, name=name, provenance=provenance, progress=progress, **options
    )


def _in_folder(folder: str, suffix: str) -> Callable[[str], bool]:
    """Keep members below a ``folder`` path component whose names end with ``suffix``."""
    return lambda member: folder in PurePosixPath(member).parts and member.endswith(suffix)


def _ends_with(*suffixes: str) -> Callable[[str], bool]:
    return lambda member: member.endswith(suffixes)


_COCO = "http://images.cocodataset.org"
_STATMT = "https://www.statmt.org"
_OPENSLR = "https://www.openslr.org/resources/12"
_OPENSLR_MIRRORS = (  # as listed on https://www.openslr.org/12/
    "https://us.openslr.org/resources/12",
    "https://openslr.elda.org/resources/12",
    "https://openslr.magicdatatech.com/resources/12",
)
_SPEECH_OPTIONS = {
    "limit": None,
    "max_seconds": utterances.DEFAULT_MAX_SECONDS,
    "test_fraction": utterances.DEFAULT_TEST_FRACTION,
    "skip_bad": False,
}


def _openslr(key: str, filename: str) -> Source:
    return Source(
        key,
        f"{_OPENSLR}/{filename}",
        filename,
        keep=_ends_with(".flac", librispeech.TRANS_SUFFIX),
        mirrors=tuple(f"{base}/{filename}" for base in _OPENSLR_MIRRORS),
    )


# Reed et al.'s archive lives on Google Drive, which may answer with a web page instead of the
# file: then download it in a browser into the downloads folder, or give a mirror URL.
_REED_CUB = (
    "https://drive.usercontent.google.com/download?id=0B0ywwgffWnLLZW9uVHNjb2JmNlE"
    "&export=download&confirm=t"
)
PUBLISHED: dict[str, Published] = {
    "edges2shoes": _pix2pix("edges2shoes", "about 2 GB"),
    "night2day": _pix2pix("night2day", "about 0.1 GB"),
    cub.NAME: Published(
        cub.NAME,
        (
            Source(
                "images",
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                "CUB_200_2011.tgz",
            ),
            Source(
                "text", _REED_CUB, "cvpr2016_cub.tar.gz", keep=_in_folder(cub.TEXT_ROOT, ".txt")
            ),
        ),
        cub.convert,
        {
            "image_size": cub.DEFAULT_IMAGE_SIZE,
            "limit": None,
            "texts_per_image": None,
            "crop": "center",
            "seed": 0,
        },
        "about 1.2 GB of photos plus the descriptions archive",
    ),
    coco.NAME: Published(
        coco.NAME,
        (
            Source(
                "annotations",
                f"{_COCO}/annotations/annotations_trainval2014.zip",
                "annotations_trainval2014.zip",
                unpack=False,
            ),
            Source("train", f"{_COCO}/zips/train2014.zip", "train2014.zip", unpack=False),
            Source("val", f"{_COCO}/zips/val2014.zip", "val2014.zip", unpack=False),
        ),
        coco.convert,
        {
            "image_size": coco.DEFAULT_IMAGE_SIZE,
            "limit": None,
            "texts_per_image": None,
            "seed": 0,
        },
        "about 19 GB (train2014 13 GB, val2014 6 GB, annotations 0.25 GB)",
    ),
    wmt.NAME: Published(
        wmt.NAME,
        (
            Source(
                "train",
                f"{_STATMT}/wmt13/training-parallel-europarl-v7.tgz",
                "training-parallel-europarl-v7.tgz",
                keep=_ends_with(f"{wmt.PARALLEL_SUFFIX}.en", f"{wmt.PARALLEL_SUFFIX}.fr"),
            ),
            Source(
                "test",
                f"{_STATMT}/wmt14/test-full.tgz",
                "test-full.tgz",
                keep=_ends_with(wmt.TEST_SOURCE, wmt.TEST_REFERENCE),
            ),
        ),
        wmt.convert,
        {"limit": None, "lowercase": False, "vocab_size": wmt.DEFAULT_VOCAB_SIZE, "seed": 0},
        "about 0.7 GB",
    ),
    ljspeech.NAME: Published(
        ljspeech.NAME,
        (
            Source(
                "archive",
                "https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2",
                "LJSpeech-1.1.tar.bz2",
            ),
        ),
        ljspeech.convert,
        {**_SPEECH_OPTIONS, "style_column": None},
        "about 2.6 GB",
    ),
    librispeech.NAME: Published(
        librispeech.NAME,
        (
            _openslr("train", f"{librispeech.TRAIN_SUBSET}.tar.gz"),
            _openslr("test", f"{librispeech.TEST_SUBSET}.tar.gz"),
        ),
        librispeech.convert,
        dict(_SPEECH_OPTIONS),
        "about 6.7 GB (train-clean-100 6.3 GB, test-clean 0.35 GB)",
    ),
}


def downloads_dir() -> Path:
    return paths.home() / "downloads"


def fetch(
    name: str,
    dest: Path | None = None,
    *,
    url: str | dict[str, str] | None = None,
    expected_sha256: str | dict[str, str] | None = None,
    image_size: int | None = None,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    **options,
) -> Path:
    """Fetch a published data set and return its converted folder.

    ``url`` overrides the official address(es) (mirrors, tests): a string for a one-archive data
    set or ``{source key: url}``; with a string, a ``name`` not in :data:`PUBLISHED` is fetched
    as a pix2pix aligned archive. ``expected_sha256`` overrides the known digest(s) the same way.
    ``image_size`` (None: the data set's default), ``limit`` and ``options`` (e.g.
    ``texts_per_image``, ``crop``, ``lowercase``, ``vocab_size``) go to the converter; a folder
    converted with the same options is reused unless ``force``. The kept archives are reused
    whenever their digests still check out.
    """
    if name in PUBLISHED:
        spec = PUBLISHED[name]
    elif isinstance(url, str):
        spec = _pix2pix(name, "unknown size")
    else:
        raise DataError(f"unknown data set {name!r}; fetchable ones are {sorted(PUBLISHED)}")
    given = {"limit": limit, **({"image_size": image_size} if image_size is not None else {})}
    params = _options(spec, {**given, **options})
    urls = _keyed(spec, url, "url")
    digests = _keyed(spec, expected_sha256, "sha256")
    out = paths.dataset_dir(name)
    if not force and _converted_ok(out, name, params):
        return out
    dest = Path(dest) if dest is not None else downloads_dir()
    dest.mkdir(parents=True, exist_ok=True)
    archives, provenance = {}, {}
    for source in spec.sources:
        chosen = urls.get(source.key) or _mirror_url(source)
        address = chosen or source.url
        archive = dest / source.filename
        if not archive.is_file():
            address = _download_any([chosen] if chosen else _addresses(source), archive, progress)
        pinned = digests.get(source.key) or source.sha256
        expected = _expected_digest(_stem(archive), dest, pinned)
        digest = check_sha256(archive, expected)
        archives[source.key] = archive
        provenance[source.key] = {"url": address, "archive_sha256": digest, "archive": str(archive)}
    if len(spec.sources) == 1:  # one archive: keep the flat provenance keys of pix2pix folders
        provenance = next(iter(provenance.values()))
    provenance[FETCH_KEY] = params
    inputs: dict[str, Path] = {}
    try:
        for source in spec.sources:
            archive = archives[source.key]
            if source.unpack:
                folder = dest / f"{_stem(archive)}.extracted"
                shutil.rmtree(folder, ignore_errors=True)
                inputs[source.key] = safe_extract(archive, folder, keep=source.keep)
            else:
                inputs[source.key] = archive
        _clear(out)
        return spec.convert(
            inputs, out, name=name, provenance=provenance, progress=progress, **params
        )
    finally:
        for source in spec.sources:
            if source.unpack:
                shutil.rmtree(dest / f"{_stem(archives[source.key])}.extracted", ignore_errors=True)


def _options(spec: Published, given: dict) -> dict:
    """The converter's options: its defaults updated with ``given``; ConfigError on unknown."""
    unknown = sorted(set(given) - set(spec.options))
    if unknown:
        raise ConfigError(
            f"{spec.name} has no option {', '.join(unknown)}; its options are "
            f"{', '.join(sorted(spec.options))}"
        )
    params = {**spec.options, **{k: v for k, v in given.items() if v is not None}}
    limit = params.get("limit")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive number of items, got {limit!r}")
    if "image_size" in params and (
        not isinstance(params["image_size"], int) or params["image_size"] < 1
    ):
        raise ConfigError(
            f"image_size must be a positive number of pixels, got {params['image_size']!r}"
        )
    return params


def _keyed(spec: Published, value: str | dict[str, str] | None, what: str) -> dict[str, str]:
    """A per-source override (URL or digest) as ``{source key: value}``."""
    keys = [source.key for source in spec.sources]
    if value is None:
        return {}
    if isinstance(value, str):
        if len(keys) != 1:
            raise ConfigError(
                f"{spec.name} has {len(keys)} archives ({', '.join(keys)}): give the {what} as "
                f"KEY=VALUE, e.g. {keys[0]}=..."
            )
        return {keys[0]: value}
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise ConfigError(
            f"{spec.name} has no archive {', '.join(unknown)}; its archives are {', '.join(keys)}"
        )
    return dict(value)


def parse_keyed(values: list[str] | None) -> str | dict[str, str] | None:
    """Command-line overrides ``[KEY=]VALUE ...`` -> one plain value or ``{key: value}``.

    ``KEY=`` is a bare word before ``=``; a URL's own ``=`` (``?id=...``) comes after ``://``."""
    if not values:
        return None
    keyed, plain = {}, []
    for value in values:
        match = re.fullmatch(r"([A-Za-z_]\w*)=(.+)", value)
        if match:
            keyed[match.group(1)] = match.group(2)
        else:
            plain.append(value)
    if plain and (keyed or len(plain) > 1):
        raise ConfigError(f"give several values as KEY=VALUE, not {plain[0]!r}")
    return plain[0] if plain else keyed


def parse_options(values: list[str]) -> dict:
    """Command-line ``KEY=VALUE`` converter options; values are read as YAML scalars
    (``1`` -> int, ``2e-2`` -> float, ``true`` -> bool, ``null`` -> None, anything else a
    string)."""
    options = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_]\w*", key):
            raise ConfigError(f"--option wants KEY=VALUE, got {value!r}")
        try:
            options[key] = load_yaml(raw)  # YAML 1.2 floats: test_fraction=2e-2 is a float
        except yaml.YAMLError as exc:
            raise ConfigError(f"--option {key}: cannot read {raw!r} ({exc})") from exc
    return options


def _addresses(source: Source) -> list[str]:
    return [source.url, *source.mirrors]


def _download_any(addresses: list[str], archive: Path, progress: bool) -> str:
    """Download ``archive`` from the first address that delivers it; return that address.

    Each failure (unreachable host, HTTP error, a web page instead of the archive) moves on to
    the next address; the last failure is raised, naming every address tried."""
    failures = []
    for address in addresses:
        try:
            download(address, archive, progress=progress)
            refuse_web_page(archive, address)
            return address
        except DataError as exc:
            failures.append(exc)
            if len(failures) < len(addresses):
                print(f"{exc}; trying the next mirror")
    if len(failures) == 1:
        raise failures[0]
    raise DataError(
        f"could not download {archive.name} from any of {len(addresses)} addresses "
        f"({', '.join(addresses)}); last error: {failures[-1]}"
    ) from failures[-1]


def _mirror_url(source: Source) -> str | None:
    base = os.environ.get(MIRROR_ENV, "").strip()
    return f"{base.rstrip('/')}/{source.filename}" if base else None


def _stem(archive: Path) -> str:
    """The archive's name without its archive suffix (``CUB_200_2011.tgz`` -> ``CUB_200_2011``)."""
    for suffix in ARCHIVE_SUFFIXES:
        if archive.name.endswith(suffix):
            return archive.name[: -len(suffix)]
    return archive.name


def _clear(out: Path) -> None:
    """Remove a previous conversion's files so a new one never mixes with them."""
    store.clear_dataset_files(out)


def _converted_ok(out: Path, name: str, params: dict) -> bool:
    """True when ``out`` holds an intact conversion of ``name`` made with the same options."""
    if not (out / store.MANIFEST).is_file():
        return False
    try:
        manifest = store.verify(out)
    except DataError:
        return False
    if manifest.name != name:
        return False
    recorded = manifest.provenance.get(FETCH_KEY)
    if recorded is None:  # converted before options were recorded: pix2pix size and limit
        return manifest.image_size == params.get("image_size") and manifest.provenance.get(
            "limit"
        ) == params.get("limit")
    return recorded == params


def _sha256_record(stem: str, dest: Path) -> Path:
    return dest / f"{stem}.sha256"


def _expected_digest(stem: str, dest: Path, given: str | None) -> str | None:
    """The digest to check against: given or pinned > recorded on first download."""
    if given:
        return given.strip().lower()
    record = _sha256_record(stem, dest)
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
        write_text(_sha256_record(_stem(archive), archive.parent), f"{digest}  {archive.name}\n")
        print(f"{archive.name}: sha256 {digest} (no pinned digest; recorded for later checks)")
        return digest
    if digest != expected:
        archive.unlink(missing_ok=True)
        raise DataError(
            f"{archive}: sha256 {digest} does not match the expected {expected}; "
            "the damaged download was removed, run the fetch again"
        )
    return digest


def refuse_web_page(archive: Path, url: str) -> None:
    """A host that wants a browser (sign-in, virus-scan page) answers with HTML: say so instead
    of failing later with "not an archive"."""
    with open(archive, "rb") as handle:
        head = handle.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        archive.unlink()
        raise DataError(
            f"{url} answered with a web page, not the archive; download {archive.name} in a "
            f"browser into {archive.parent}, or pass a mirror URL, then fetch again"
        )


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
    """Append (206) or write afresh (200) the response body to the part file.

    The part file is the one file m3dgan writes in place rather than through
    ``m3dgan.atomic``: it is the download's resume point. A failure to read (the network) is a
    DataError; a failure to write it (a full disk) an OutputError naming it, which keeps what was
    downloaded (a whole prefix of the file, so a later fetch resumes from it) and removes an
    empty one."""
    mode = "ab" if offset else "wb"
    try:
        with (
            open(part, mode) as handle,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                desc=_stem(part.with_name(part.name.removesuffix(".part"))),
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    block = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise DataError(
                        f"download of {url} interrupted at {handle.tell()} bytes ({exc}); "
                        "run again to resume"
                    ) from exc
                if not block:
                    break
                handle.write(block)
                bar.update(len(block))
    except OSError as exc:  # opening, writing or flushing the part file
        raise _part_error(part, exc) from exc


def _part_error(part: Path, exc: OSError) -> OutputError:
    size = part.stat().st_size if part.is_file() else 0
    if not size:
        part.unlink(missing_ok=True)
        return output_error(part, exc)
    return OutputError(
        f"{output_error(part, exc)}; the {size} bytes downloaded so far are kept there: free "
        "space and fetch again to resume, or delete it"
    )


# ---------------------------------------------------------------------------------------------
# Safe extraction


def _unsafe_reason(name: str, link: str | None = None, device: bool = False) -> str | None:
    """Why a member could write outside the extraction folder, or None if it is safe."""
    path = PurePosixPath(name)
    if name.startswith(("/", "\\")) or path.is_absolute() or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in path.parts or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "'..' in path"
    if link is not None:
        target = PurePosixPath(link)
        if target.is_absolute() or ".." in target.parts:
            return f"link to {link!r}"
    if device:
        return "device file"
    return None


def safe_extract(archive: Path, dest: Path, keep: Callable[[str], bool] | None = None) -> Path:
    """Extract a tar or zip archive into ``dest``, only the members ``keep`` accepts (all when
    None); refuse the whole archive if any member is unsafe."""
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        return _extract_zip(archive, dest, keep)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                link = member.linkname if member.issym() or member.islnk() else None
                reason = _unsafe_reason(member.name, link, member.isdev())
                if reason:
                    raise DataError(f"{archive}: refusing unsafe member {member.name!r} ({reason})")
            if keep is not None:
                members = [m for m in members if m.isdir() or keep(m.name)]
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # older Python: members were checked above
                tar.extractall(dest, members=members)
    except _FILTER_ERROR as exc:  # the "data" filter caught something our checks missed
        raise DataError(f"{archive}: refusing unsafe member ({exc})") from exc
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:  # the caller removes the half-extracted folder
            raise output_error(dest, exc) from exc
        raise DataError(f"{archive}: damaged or not a tar or zip archive ({exc})") from exc
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: damaged or not a tar or zip archive ({exc})") from exc
    return dest


def _extract_zip(archive: Path, dest: Path, keep: Callable[[str], bool] | None) -> Path:
    try:
        with zipfile.ZipFile(archive) as zf:
            names = zf.namelist()
            for name in names:
                reason = _unsafe_reason(name)
                if reason:
                    raise DataError(f"{archive}: refusing unsafe member {name!r} ({reason})")
            for name in names:
                if keep is None or keep(name):
                    zf.extract(name, dest)
    except OSError as exc:
        if exc.errno in _WRITE_ERRNOS:  # the caller removes the half-extracted folder
            raise output_error(dest, exc) from exc
        raise DataError(f"{archive}: damaged zip archive ({exc})") from exc
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: damaged zip archive ({exc})") from exc
    return dest
