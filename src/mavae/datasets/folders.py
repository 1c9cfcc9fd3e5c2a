"""Folders of files: 2-D images (Pillow) and NIfTI volumes (nibabel, optional extra ``nifti``)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np

from mavae.datasets.base import Dataset
from mavae.datasets.common import check_image_size, resize_images, split_by_subject

NIFTI_SUFFIXES = (".nii", ".nii.gz")
OS_METADATA = ("thumbs.db", "desktop.ini")  # Windows' folder files: hidden there, plain files on a copy
_INTEGER = re.compile(r"[+-]?\d+")


def load_image_folder(path: str | Path, image_size: int | None = None, labels_csv: str | Path | None = None,
                      test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Grayscale images (PNG, JPEG or anything else Pillow reads) from one folder.

    Labels, in order of precedence:
    - labels_csv: a CSV with columns ``file,label[,subject]``, ``file`` relative to the folder
      (the CSV path itself is taken as given, else relative to the folder); only the listed
      files are loaded. Integer labels are kept; other labels map to 0..L-1 in sorted order.
    - one subfolder per label: sorted folder names map to 0..L-1;
    - else the top-level files, unlabelled (labels None).
    Hidden files (leading ".") and Windows' Thumbs.db and desktop.ini are ignored; any other file
    that is not an image raises.

    Subjects: the CSV's ``subject`` column, else the file stem (the same stem in two label
    folders is one subject). The split is by subject (see ``split_by_subject``).
    Pixels: 8-bit / 255, 16-bit / 65535; colour is converted to luminance (Pillow "L").
    image_size: resize every image to image_size x image_size (bilinear, antialiased; the
    aspect ratio is not kept). Without it all images must share one size.
    Returns Dataset(images (n, 1, H, W), name = the folder's name).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    check_image_size(image_size)
    if labels_csv is not None:
        files, labels, subjects = _read_labels_csv(folder, Path(labels_csv))
    else:
        files, labels = _list_images(folder)
        subjects = [f.stem for f in files]
    if not files:
        raise ValueError(f"{folder}: no image files found")

    images = []
    for f in files:
        image = read_image(f)
        images.append(image if image_size is None else resize_images(image[None], image_size)[0])
    if image_size is None:
        for f, image in zip(files, images):
            if image.shape != images[0].shape:
                (h0, w0), (h, w) = images[0].shape, image.shape
                raise ValueError(f"images differ in size: {files[0]} is {w0}x{h0}, {f} is {w}x{h} "
                                 "(width x height); pass image_size to resize them")
    subject_ids = np.array(subjects)
    return Dataset(
        images=np.stack(images)[:, None],
        labels=None if labels is None else np.asarray(labels, dtype=np.int64),
        subject_ids=subject_ids,
        split=split_by_subject(subject_ids, test_fraction, seed, folder),
        name=folder.name,
    )


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name.lower() not in OS_METADATA)


def _list_images(folder: Path) -> tuple[list[Path], list[int] | None]:
    """Files and labels: label subfolders when there are any, else the top-level files."""
    entries = _visible(folder)
    dirs = [p for p in entries if p.is_dir()]
    files = [p for p in entries if not p.is_dir()]
    if not dirs:
        return files, None
    if files:
        raise ValueError(f"{folder}: has label subfolders and also the file {files[0]} at the top level; move "
                         "it into a label subfolder (an image) or out of the folder, or pass labels_csv")
    out_files, out_labels = [], []
    for label, sub in enumerate(dirs):
        members = _visible(sub)
        nested = [p for p in members if p.is_dir()]
        if nested:
            raise ValueError(f"{nested[0]}: nested folders are not supported (one subfolder per label)")
        if not members:
            raise ValueError(f"{sub}: label folder is empty")
        out_files += members
        out_labels += [label] * len(members)
    return out_files, out_labels


def _read_labels_csv(folder: Path, csv_path: Path) -> tuple[list[Path], list[int], list[str]]:
    """Files, integer labels and subjects listed in a ``file,label[,subject]`` CSV."""
    if not csv_path.is_file() and (folder / csv_path).is_file():
        csv_path = folder / csv_path
    if not csv_path.is_file():
        raise ValueError(f"labels_csv {csv_path}: no such file")
    with open(csv_path, newline="") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "file" not in columns or "label" not in columns:
            raise ValueError(f"{csv_path}: needs columns file,label[,subject]; found {','.join(columns) or 'none'}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    files, raw_labels, subjects, seen = [], [], [], set()
    for line, row in enumerate(rows, start=2):
        name, label = row["file"], row["label"]
        if not name or not label:
            raise ValueError(f"{csv_path}, line {line}: empty file or label")
        f = folder / name
        if not f.is_file():
            raise ValueError(f"{csv_path}, line {line}: {f} does not exist")
        if name in seen:
            raise ValueError(f"{csv_path}, line {line}: {name} is listed twice")
        seen.add(name)
        files.append(f)
        raw_labels.append(label)
        subjects.append(row.get("subject") or f.stem)
    if all(_INTEGER.fullmatch(v) for v in raw_labels):
        labels = [int(v) for v in raw_labels]
    else:
        index = {name: i for i, name in enumerate(sorted(set(raw_labels)))}
        labels = [index[v] for v in raw_labels]
    return files, labels, subjects


def read_image(f: Path) -> np.ndarray:
    """One image as (H, W) float32 in [0, 1]; ValueError naming the file if it is not an image."""
    from PIL import Image

    try:
        with Image.open(f) as img:
            img.load()
            mode = img.mode
            if mode.startswith("I;16") or mode == "I":
                array, scale = np.asarray(img, dtype=np.float32), 65535.0
            elif mode != "F":
                array, scale = np.asarray(img.convert("L"), dtype=np.float32), 255.0
    except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{f}: not a readable image ({type(err).__name__}: {err})") from err
    if mode == "F":
        raise ValueError(f"{f}: floating-point images (Pillow mode F) are not supported")
    if array.size and (array.min() < 0 or array.max() > scale):
        raise ValueError(f"{f}: pixel values outside 0..{int(scale)}")
    return array / np.float32(scale)


def load_nifti_folder(path: str | Path, image_size: int | None = 64, slices: str = "central", n_central: int = 5,
                      slice_range: tuple[int, int] | None = None, normalize: str | None = "percentile",
                      test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Axial 2-D slices of the 3-D ``.nii`` / ``.nii.gz`` volumes in a folder, one subject per file.

    Each volume is reoriented to the closest RAS+ orientation (nibabel
    ``as_closest_canonical``), so the last axis runs inferior -> superior and its slices are
    axial; each slice is shown with anterior at the top. Trailing singleton axes are dropped;
    any other non-3-D volume raises. Other files in the folder are ignored.

    slices: "central" (the n_central middle slices), "range" (slice_range = (start, stop),
    Python slice semantics) or "all". Giving slice_range implies "range".
    normalize (per volume, over all its voxels): "percentile" clips to the 1st..99th
    percentile and scales that to [0, 1] (min..max when the two coincide); "minmax" scales
    min..max; "none" / None only clips to [0, 1]. A constant volume gives zeros.
    image_size: resize slices to image_size x image_size (torch bilinear, antialiased);
    None keeps the native size, which must then agree across files.
    Subject id: the file name without .nii/.nii.gz. Unlabelled; split by subject.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    check_image_size(image_size)
    if slice_range is not None:
        slices = "range"
    if slices not in ("central", "range", "all"):
        raise ValueError(f"slices must be 'central', 'range' or 'all'; got {slices!r}")
    if slices == "central" and (isinstance(n_central, bool) or not isinstance(n_central, (int, np.integer))
                                or n_central < 1):
        raise ValueError(f"n_central must be a positive integer; got {n_central!r}")
    if slices == "range":
        if slice_range is None or len(slice_range) != 2 or not 0 <= slice_range[0] < slice_range[1]:
            raise ValueError(f"slice_range must be (start, stop) with 0 <= start < stop; got {slice_range!r}")
    if normalize is None:
        normalize = "none"
    if normalize not in ("percentile", "minmax", "none"):
        raise ValueError(f"normalize must be 'percentile', 'minmax' or 'none'; got {normalize!r}")

    files = nifti_files(folder)
    if not files:
        raise ValueError(f"{folder}: no .nii or .nii.gz files")
    images, subjects = [], []
    for f in files:
        volume = _read_volume(f)
        depth = volume.shape[2]
        if slices == "central":
            if n_central > depth:
                raise ValueError(f"{f}: n_central={n_central} but the volume has {depth} slices")
            start, stop = (depth - n_central) // 2, (depth - n_central) // 2 + n_central
        elif slices == "range":
            start, stop = slice_range
            if stop > depth:
                raise ValueError(f"{f}: slice_range {tuple(slice_range)} but the volume has {depth} slices")
        else:
            start, stop = 0, depth
        lo, hi = _intensity_window(volume, normalize)
        chosen = volume[:, :, start:stop]
        chosen = np.clip((chosen - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(chosen)
        # (x, y, k) -> (k, y, x) with y (posterior -> anterior) flipped: anterior at the top.
        chosen = np.ascontiguousarray(chosen.transpose(2, 1, 0)[:, ::-1, :], dtype=np.float32)
        if image_size is not None:
            chosen = resize_images(chosen, image_size)
        elif images and chosen.shape[1:] != images[0].shape[1:]:
            raise ValueError(f"slices differ in size: {files[0]} gives {images[0].shape[1:]}, {f} gives "
                             f"{chosen.shape[1:]} (rows, columns); pass image_size to resize them")
        images.append(chosen)
        subjects += [_nifti_stem(f)] * len(chosen)
    subject_ids = np.array(subjects)
    return Dataset(images=np.concatenate(images)[:, None], labels=None, subject_ids=subject_ids,
                   split=split_by_subject(subject_ids, test_fraction, seed, folder), name=folder.name)


def nifti_files(folder: str | Path) -> list[Path]:
    """The .nii / .nii.gz files directly in ``folder``, sorted (hidden ones ignored)."""
    return [p for p in _visible(Path(folder)) if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES)]


def _nifti_stem(f: Path) -> str:
    name = f.name
    return name[:-7] if name.lower().endswith(".nii.gz") else name[:-4]


def _read_volume(f: Path) -> np.ndarray:
    """A 3-D float32 volume in closest-RAS orientation; ValueError naming the file otherwise."""
    try:
        import nibabel as nib
    except ImportError as err:
        raise ImportError("NIfTI folders need nibabel: pip install 'mavae[nifti]'") from err
    try:
        image = nib.load(str(f))
        shape = tuple(image.shape)
    except Exception as err:  # nibabel raises many types for a damaged header
        raise ValueError(f"{f}: unreadable NIfTI file ({type(err).__name__}: {err})") from err
    core = shape
    while len(core) > 3 and core[-1] == 1:
        core = core[:-1]
    if len(core) != 3:
        raise ValueError(f"{f}: expected a 3-D volume, got shape {shape}")
    try:
        canonical = nib.as_closest_canonical(image)
        volume = canonical.get_fdata(dtype=np.float32).reshape(canonical.shape[:3])
    except Exception as err:  # truncated or corrupt data: EOFError, zlib.error, OSError, ValueError ...
        raise ValueError(f"{f}: unreadable NIfTI data ({type(err).__name__}: {err})") from err
    return np.nan_to_num(volume, copy=False)


def _intensity_window(volume: np.ndarray, normalize: str) -> tuple[float, float]:
    """(lo, hi) that map to (0, 1)."""
    if normalize == "none":
        return 0.0, 1.0
    lo, hi = float(volume.min()), float(volume.max())
    if normalize == "percentile":
        p_lo, p_hi = np.percentile(volume, [1.0, 99.0])
        if p_hi > p_lo:
            lo, hi = float(p_lo), float(p_hi)
    return lo, hi
