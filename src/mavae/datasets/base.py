"""The one small record every data source returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images of one cohort with an optional ground truth that training never sees.

    images: (n, C, H, W) float32 in [0, 1].
    labels: (n,) int64, or None when the cohort is unlabelled.
    subject_ids: (n,) one id per image (a subject may own several images).
    split: (n,) strings "train" / "test"; the train/test split is by subject.
    """

    images: np.ndarray
    labels: np.ndarray | None
    subject_ids: np.ndarray
    split: np.ndarray
    name: str = "dataset"

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4:
            raise ValueError(f"{self.name}: images must be (n, C, H, W), got shape {self.images.shape}")
        for field in ("subject_ids", "split") + (("labels",) if self.labels is not None else ()):
            if len(getattr(self, field)) != n:
                raise ValueError(f"{self.name}: {field} has {len(getattr(self, field))} entries for {n} images")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def subset(self, split: str) -> "Dataset":
        """The images of one split ("train" or "test"), in their original order."""
        keep = self.split == split
        return Dataset(
            images=self.images[keep],
            labels=None if self.labels is None else self.labels[keep],
            subject_ids=self.subject_ids[keep],
            split=self.split[keep],
            name=f"{self.name}[{split}]",
        )
