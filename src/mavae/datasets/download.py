"""Fetch MNIST / PneumoniaMNIST into a data root, checksum-verified. Never called by the tests.

Checksums:
- "mnist": the Keras ``mnist.npz`` (the SHA-256 Keras publishes, ``731c5ac6...``). The
  ``mnist.npz`` in ``shared/data/mnist`` holds the same arrays but was assembled locally, so
  its SHA-256 differs (see MNIST_SHARED_SHA256).
- "mnist-idx": the four original IDX files; SHA-256 of the three in ``shared/data/mnist/idx``
  from its README, that of ``train-images-idx3-ubyte.gz`` as published for the LeCun file.
- "pneumoniamnist": the official MedMNIST file from Zenodo. MedMNIST publishes only its MD5
  (``28209eda...``), so this one is checked with MD5. The file in
  ``shared/data/pneumoniamnist`` is a reconstruction (same images, labels and splits, other
  train row order), so it matches neither that MD5 nor a download; its own SHA-256 is
  PNEUMONIAMNIST_RECONSTRUCTED_SHA256.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from mavae.datasets.common import data_root

_MNIST_IDX_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"

# name -> [(path under the data root, url, algorithm, digest)]
SOURCES: dict[str, list[tuple[str, str, str, str]]] = {
    "mnist": [
        ("mnist/mnist.npz", "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
         "sha256", "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"),
    ],
    "mnist-idx": [
        ("mnist/idx/" + f, _MNIST_IDX_URL + f, "sha256", digest) for f, digest in (
            ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        )
    ],
    "pneumoniamnist": [
        ("pneumoniamnist/pneumoniamnist.npz",
         "https://zenodo.org/records/10519652/files/pneumoniamnist.npz?download=1",
         "md5", "28209eda62fecd6e6a2d98b1501bb15f"),
    ],
}

# The locally assembled files in shared/data (README checksums); not what a download gives.
MNIST_SHARED_SHA256 = "06af5dfe73b70e3bc1c36439982b18a8d76803db9b544f6fdf838a37fbb01b64"
PNEUMONIAMNIST_RECONSTRUCTED_SHA256 = "6b7456d6039c8c8cab605578d4c849c95603f912ad8019c4850ec07cfb79f24a"

_CHUNK = 1 << 20


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | Path, expected: str, algorithm: str = "sha256") -> None:
    """Raise ValueError naming the file unless its ``algorithm`` digest equals ``expected``."""
    actual = file_digest(path, algorithm)
    if actual != expected.lower():
        raise ValueError(f"{path}: {algorithm} is {actual}, expected {expected.lower()}")


def download(name: str, dest: str | Path | None = None, overwrite: bool = False,
             timeout: float = 60.0) -> list[Path]:
    """Download data set ``name`` (a key of SOURCES) under ``dest`` (default ``data_root()``).

    Files land where the loaders look (``dest/mnist/mnist.npz``, ...). Each is written to a
    temporary name beside its target, verified, then renamed; a failed check leaves nothing.
    A present file with the right checksum is kept; one with another checksum raises unless
    ``overwrite``. Returns the files' paths.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown download {name!r}; known: {', '.join(SOURCES)}")
    root = data_root() if dest is None else Path(dest).expanduser().resolve()
    paths = []
    for rel, url, algorithm, expected in SOURCES[name]:
        target = root / rel
        if target.exists():
            try:
                verify_checksum(target, expected, algorithm)
                paths.append(target)
                continue
            except ValueError:
                if not overwrite:
                    raise ValueError(f"{target} exists with another {algorithm} than the published "
                                     f"{expected}; pass overwrite=True to replace it") from None
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(dir=target.parent, prefix=target.name + ".", suffix=".part",
                                             delete=False)
        tmp = Path(handle.name)
        try:
            with handle, urllib.request.urlopen(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    handle.write(chunk)
            try:
                verify_checksum(tmp, expected, algorithm)
            except ValueError as err:
                raise ValueError(f"{url} (for {target}) failed its checksum: {err}") from None
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        paths.append(target)
    return paths
