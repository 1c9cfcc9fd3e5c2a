"""Small file writers the data-loading tests share."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_png(path: Path, array: np.ndarray) -> None:
    """A uint8 array as a PNG, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_nifti(path: Path, data: np.ndarray) -> None:
    """A float32 NIfTI volume with an identity affine."""
    import nibabel as nib

    nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), str(path))
