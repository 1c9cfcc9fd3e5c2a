"""File-based data sources: MNIST, PneumoniaMNIST, digits, image and NIfTI folders, downloads."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from mavae.datasets import (LOADERS, data_root, load_dataset, load_digits, load_image_folder, load_mnist,
                            load_nifti_folder, load_pneumoniamnist)
from mavae.datasets.arrays import read_idx
from mavae.datasets.download import SOURCES, file_digest, verify_checksum
from writers import write_nifti, write_png

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MAVAE_DATA") or ROOT.parent / "shared" / "data").resolve()
needs_shared = pytest.mark.skipif(not (SHARED / "mnist" / "mnist.npz").is_file(),
                                  reason=f"no shared data at {SHARED}")


@pytest.fixture(scope="module")
def mnist():
    return load_mnist(SHARED / "mnist" / "mnist.npz")


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MAVAE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert data_root() == (tmp_path / ".." / "shared" / "data").resolve()
    monkeypatch.setenv("MAVAE_DATA", "rel/data")
    assert data_root() == tmp_path.resolve() / "rel" / "data"
    assert data_root().is_absolute()


@needs_shared
def test_mnist_npz(mnist):
    assert mnist.images.shape == (70000, 1, 28, 28) and mnist.images.dtype == np.float32
    assert mnist.name == "mnist" and mnist.labels.dtype == np.int64
    assert mnist.images.min() == 0.0 and mnist.images.max() == 1.0
    train, test = mnist.subset("train"), mnist.subset("test")
    assert len(train) == 60000 and len(test) == 10000
    assert train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(float(train.images.mean(dtype=np.float64)) - 0.1307) < 1e-4
    assert np.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert np.array_equal(mnist.subject_ids, np.arange(70000))


@needs_shared
def test_mnist_idx_matches_npz(mnist, tmp_path):
    idx = SHARED / "mnist" / "idx"
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        (tmp_path / name).symlink_to(idx / name)
    from_idx = load_dataset(tmp_path)  # a folder of IDX files dispatches to load_mnist
    test = mnist.subset("test")
    assert from_idx.name == "mnist" and set(from_idx.split) == {"test"}
    assert np.array_equal(from_idx.images, test.images)
    assert np.array_equal(from_idx.labels, test.labels)
    # The shared folder also holds train labels without train images: skipped with a warning.
    with pytest.warns(UserWarning, match="train-labels-idx1-ubyte.gz"):
        assert len(load_mnist(idx)) == 10000
    assert np.array_equal(read_idx(idx / "train-labels-idx1-ubyte.gz", 1), mnist.subset("train").labels)


def test_idx_header_checks(tmp_path):
    good = np.array([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9], dtype=np.uint8)
    (tmp_path / "ok").write_bytes(good.tobytes())
    assert read_idx(tmp_path / "ok", 1).tolist() == [7, 8, 9]
    bad_magic = good.copy()
    bad_magic[3] = 3
    (tmp_path / "magic").write_bytes(bad_magic.tobytes())
    with pytest.raises(ValueError, match="magic.*0x00000803"):
        read_idx(tmp_path / "magic", 1)
    (tmp_path / "short").write_bytes(good[:-1].tobytes())
    with pytest.raises(ValueError, match=r"short.*shape \(3,\)"):
        read_idx(tmp_path / "short", 1)
    with pytest.raises(ValueError, match="no complete pair"):
        load_mnist(tmp_path)


@needs_shared
def test_pneumoniamnist(monkeypatch):
    monkeypatch.setenv("MAVAE_DATA", str(SHARED))
    data = load_dataset("pneumoniamnist")
    assert data.images.shape == (5856, 1, 28, 28) and data.name == "pneumoniamnist"
    assert 0.0 <= data.images.min() and data.images.max() <= 1.0
    train, test = data.subset("train"), data.subset("test")
    assert len(train) == 4708 + 524 and len(test) == 624
    assert np.bincount(train.labels).tolist() == [1214 + 135, 3494 + 389]
    assert np.bincount(test.labels).tolist() == [234, 390]
    no_val = load_pneumoniamnist(SHARED / "pneumoniamnist" / "pneumoniamnist.npz", include_val=False)
    assert np.unique(no_val.split, return_counts=True)[1].tolist() == [624, 4708]
    assert np.array_equal(no_val.subset("test").images, test.images)


def test_digits():
    data = load_digits()
    assert data.images.shape == (1797, 1, 16, 16) and data.name == "digits"
    assert data.images.min() == 0.0 and data.images.max() == 1.0
    assert (data.split == "test").sum() == round(0.2 * 1797)
    assert set(np.unique(data.labels)) == set(range(10))
    from sklearn.datasets import load_digits as sklearn_digits
    assert np.array_equal(data.images[:, 0, ::2, ::2] * 16, sklearn_digits().images)
    assert np.array_equal(load_digits(seed=0).split, data.split)
    assert not np.array_equal(load_digits(seed=1).split, data.split)
    assert load_digits(upscale=1).images.shape == (1797, 1, 8, 8)


def test_registry_and_unknown_name(tmp_path):
    assert set(LOADERS) == {"cardiac", "brain", "mnist", "pneumoniamnist", "digits"}
    with pytest.raises(ValueError, match="known: cardiac, brain, mnist, pneumoniamnist, digits"):
        load_dataset("no-such-set")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match=r"other\.npz: unknown \.npz layout"):
        load_dataset(tmp_path / "other.npz")


@needs_shared
def test_truncated_npz_names_file(tmp_path):
    broken = tmp_path / "broken.npz"
    broken.write_bytes((SHARED / "pneumoniamnist" / "pneumoniamnist.npz").read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"broken\.npz.*corrupt or truncated"):
        load_dataset(broken)
    with pytest.raises(ValueError, match=r"broken\.npz"):
        load_pneumoniamnist(broken)
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"partial\.npz: missing array\(s\) y_train, x_test, y_test"):
        load_mnist(tmp_path / "partial.npz")


def test_png_folder_subfolder_labels(tmp_path):
    rng = np.random.default_rng(0)
    written = {}
    for label, cls in enumerate(["a_dog", "b_cat"]):  # sorted folder names -> 0, 1
        for i in range(5):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            write_png(tmp_path / "imgs" / cls / f"{cls}{i}.png", pixels)
            written[f"{cls}{i}"] = (pixels, label)
    for junk in (".DS_Store", "a_dog/Thumbs.db", "desktop.ini"):  # hidden files and Windows' folder files are ignored
        (tmp_path / "imgs" / junk).write_bytes(b"junk")
    data = load_dataset(tmp_path / "imgs", test_fraction=0.2, seed=0)
    assert data.images.shape == (10, 1, 8, 8) and data.name == "imgs"
    for image, label, subject in zip(data.images, data.labels, data.subject_ids):
        pixels, expected = written[subject]
        assert label == expected
        assert np.array_equal(image[0], pixels / np.float32(255))
    assert (data.split == "test").sum() == 2
    resized = load_image_folder(tmp_path / "imgs", image_size=4)
    assert resized.images.shape == (10, 1, 4, 4) and 0 <= resized.images.min() <= resized.images.max() <= 1


def test_png_folder_csv_labels_split_by_subject(tmp_path):
    rng = np.random.default_rng(1)
    lines = ["file,label,subject"]
    for s in range(10):
        for visit in range(3):
            write_png(tmp_path / f"s{s}_v{visit}.png", rng.integers(0, 256, (6, 6), dtype=np.uint8))
            lines.append(f"s{s}_v{visit}.png,{'scar' if s % 2 else 'healthy'},patient{s}")
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    data = load_image_folder(tmp_path, labels_csv="labels.csv", test_fraction=0.3, seed=4)
    assert len(data) == 30 and data.labels.tolist().count(1) == 15  # healthy -> 0, scar -> 1 (sorted)
    train = set(data.subset("train").subject_ids)
    test = set(data.subset("test").subject_ids)
    assert not train & test and len(test) == 3 and len(train) == 7
    for subject in test:
        assert (data.subject_ids == subject).sum() == 3
    (tmp_path / "bad.csv").write_text("name,label\nx.png,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv: needs columns file,label"):
        load_image_folder(tmp_path, labels_csv=tmp_path / "bad.csv")


def test_folder_errors(tmp_path):
    mixed = tmp_path / "mixed"
    write_png(mixed / "a.png", np.zeros((8, 8), np.uint8))
    write_png(mixed / "b.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match=r"a\.png is 8x8.*b\.png is 12x10"):
        load_image_folder(mixed)
    assert load_image_folder(mixed, image_size=8).images.shape == (2, 1, 8, 8)

    junk = tmp_path / "junk"
    write_png(junk / "a.png", np.zeros((8, 8), np.uint8))
    (junk / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"notes\.txt: not a readable image"):
        load_image_folder(junk)

    (junk / "label").mkdir()
    write_png(junk / "label" / "b.png", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"also the file .*a\.png at the top level; move it into a label subfolder"):
        load_image_folder(junk)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty: no image files"):
        load_dataset(empty)


def test_nifti_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "mri"
    folder.mkdir()
    for s in range(5):
        volume = rng.normal(100.0, 20.0, (20, 24, 11))
        volume[0, 0, 0] = 1e6  # an outlier the percentile window clips
        write_nifti(folder / f"sub-{s:02d}.nii.gz", volume)
    (folder / "participants.tsv").write_text("id\n")  # other files are ignored
    data = load_dataset(folder, image_size=16, n_central=3, test_fraction=0.4, seed=0)
    assert data.images.shape == (15, 1, 16, 16) and data.labels is None and data.name == "mri"
    assert data.images.dtype == np.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0 and data.images.std() > 0.1
    subjects, counts = np.unique(data.subject_ids, return_counts=True)
    assert subjects.tolist() == [f"sub-{s:02d}" for s in range(5)] and set(counts) == {3}
    test = set(data.subset("test").subject_ids)
    assert len(test) == 2 and not test & set(data.subset("train").subject_ids)

    # Slice choice and normalisation, exactly: slice k of this volume holds the value k.
    ramp = folder.parent / "ramp"
    ramp.mkdir()
    depth = np.arange(10, dtype=np.float32)
    write_nifti(ramp / "a.nii", np.broadcast_to(depth, (6, 4, 10)).copy())
    write_nifti(ramp / "b.nii", np.broadcast_to(depth, (6, 4, 10)).copy())
    lo, hi = np.percentile(np.broadcast_to(depth, (6, 4, 10)), [1, 99])
    picked = load_nifti_folder(ramp, image_size=None, slice_range=(2, 5))
    assert picked.images.shape == (6, 1, 4, 6)  # (rows, columns) = (y, x)
    expected = np.clip((np.array([2, 3, 4]) - lo) / (hi - lo), 0, 1)
    assert np.allclose(picked.images[:3, 0, 0, 0], expected, atol=1e-6)
    central = load_nifti_folder(ramp, image_size=None, n_central=2, normalize="none", test_fraction=0.5)
    assert np.allclose(central.images[:2].reshape(2, -1).max(axis=1), [1.0, 1.0])  # slices 4, 5 clip to 1
    assert np.allclose(load_nifti_folder(ramp, image_size=None, slices="all", normalize="minmax")
                       .images[:10, 0, 0, 0], depth / 9)


def test_nifti_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    write_nifti(bad / "good.nii.gz", np.ones((8, 8, 6)))
    write_nifti(bad / "timeseries.nii.gz", np.ones((8, 8, 6, 4)))
    with pytest.raises(ValueError, match=r"timeseries\.nii\.gz: expected a 3-D volume, got shape \(8, 8, 6, 4\)"):
        load_nifti_folder(bad)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "broken.nii").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match=r"broken\.nii: unreadable NIfTI"):
        load_nifti_folder(corrupt)
    with pytest.raises(ValueError, match=r"good\.nii\.gz: n_central=7 but the volume has 6 slices"):
        load_nifti_folder(bad, n_central=7)


def test_checksum_verifier(tmp_path):
    f = tmp_path / "blob.bin"
    f.write_bytes(b"mavae")
    right = hashlib.sha256(b"mavae").hexdigest()
    verify_checksum(f, right)
    verify_checksum(f, right.upper())
    verify_checksum(f, hashlib.md5(b"mavae").hexdigest(), "md5")
    with pytest.raises(ValueError, match=r"blob\.bin: sha256 is .*, expected 0+$"):
        verify_checksum(f, "0" * 64)
    assert file_digest(f) == right
    assert set(SOURCES) == {"mnist", "mnist-idx", "pneumoniamnist"}


@needs_shared
def test_checksum_constants_match_shared_idx():
    # The shared IDX files are the original upstream files, so the download constants fit them.
    for rel, _, algorithm, digest in SOURCES["mnist-idx"]:
        if (SHARED / rel).is_file():
            verify_checksum(SHARED / rel, digest, algorithm)
