"""Input preprocessing shared by training and the on-device runtime.

This module imports numpy and Pillow only, so the device never needs torch. The
same spec is stored in the checkpoint (model.json) and inside the exported ONNX
file (metadata), so a device reproduces exactly what the model was trained on.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


@dataclass(frozen=True)
class Preprocess:
    """How a raw image becomes the model's input tensor.

    Steps, in order: convert to ``channels`` (1 = grayscale, 3 = RGB); resize so the
    short side is ``resize_short`` and centre-crop ``crop`` (ImageNet style) or resize
    to ``resize`` exactly; scale to [0, 1]; zero-pad to ``pad_to``; normalise with
    ``mean``/``std`` (one value per channel).
    """

    channels: int = 1
    resize: tuple[int, int] | None = None
    resize_short: int | None = None
    crop: int | None = None
    pad_to: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Preprocess":
        def tup(v):
            return tuple(v) if v is not None else None

        return cls(
            channels=int(d.get("channels", 1)),
            resize=tup(d.get("resize")),
            resize_short=d.get("resize_short"),
            crop=d.get("crop"),
            pad_to=tup(d.get("pad_to")),
            mean=tuple(float(x) for x in d.get("mean", (0.0,))),
            std=tuple(float(x) for x in d.get("std", (1.0,))),
            extra=dict(d.get("extra", {})),
        )

    # -- numeric part, shared by data pipelines (uint8 arrays) and images ----------
    def normalize_batch(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 or [0,1] float array (N, C, H, W) -> normalised float32 model input."""
        x = pixels.astype(np.float32)
        if pixels.dtype == np.uint8:
            x /= 255.0
        if self.pad_to is not None:
            ph = self.pad_to[0] - x.shape[-2]
            pw = self.pad_to[1] - x.shape[-1]
            if ph < 0 or pw < 0:
                raise ValueError(f"image {x.shape[-2:]} is larger than pad_to {self.pad_to}")
            x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (x - mean) / std

    def image_to_array(self, image: "Any") -> np.ndarray:
        """PIL image -> uint8 array (C, H, W) after colour conversion, resize and crop."""
        from PIL import Image

        image = image.convert("L" if self.channels == 1 else "RGB")
        if self.resize_short is not None:
            w, h = image.size
            scale = self.resize_short / min(w, h)
            image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        elif self.resize is not None:
            image = image.resize((self.resize[1], self.resize[0]), Image.BILINEAR)
        if self.crop is not None:
            w, h = image.size
            left, top = (w - self.crop) // 2, (h - self.crop) // 2
            image = image.crop((left, top, left + self.crop, top + self.crop))
        arr = np.asarray(image, dtype=np.uint8)
        return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)

    def decode_size(self) -> tuple[int, int] | None:
        """The smallest (width, height) a decoder may scale an image down to before the
        resize (JPEG DCT scaling keeps at least this), or None if the image is used as is."""
        if self.resize is not None:
            return self.resize[1], self.resize[0]
        if self.resize_short is not None:
            return self.resize_short, self.resize_short
        return None

    def load_image(self, source: str | Path | BinaryIO, formats: tuple[str, ...] | None = None,
                   max_pixels: int | None = None) -> np.ndarray:
        """Image file (a path or a binary file object) -> model input of shape (1, ...).
        ``formats`` (e.g. ("PNG", "JPEG")) and ``max_pixels`` (default ``MAX_IMAGE_PIXELS``) bound
        what an untrusted image may make Pillow decode: the size is checked from the header, before
        any pixel is decoded, and JPEGs are decoded at the smallest scale the resize allows.
        Unreadable or refused images raise ValueError."""
        from PIL import Image, UnidentifiedImageError

        name = f"image {source}" if isinstance(source, (str, os.PathLike)) else "the uploaded image"
        max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
        kinds = " or ".join(formats) if formats else "PNG or JPEG"
        try:
            with warnings.catch_warnings():  # Pillow warns from 89 MP; our own, lower cap refuses below
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(source, formats=formats)
            with im:
                w, h = im.size
                if w * h > max_pixels:
                    raise ValueError(f"{name} is {w} x {h} pixels ({w * h / 1e6:.1f} megapixels), above the "
                                     f"{max_pixels / 1e6:.3g} megapixel limit; scale it down first")
                target = self.decode_size()
                if target is not None:
                    im.draft("L" if self.channels == 1 else "RGB", target)  # JPEG: decode at 1/2..1/8 scale
                im.load()
                arr = self.image_to_array(im)
        except FileNotFoundError:
            raise ValueError(f"image file not found: {source}") from None
        except IsADirectoryError:
            raise ValueError(f"{source} is a folder, not an image file") from None
        except Image.DecompressionBombError as e:  # Pillow's own check in Image.open, above ours
            raise ValueError(f"{name} is too large to decode safely ({e}); scale it down first") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as e:  # PIL raises SyntaxError on some bad headers
            raise ValueError(f"cannot read {name}: {e}. Use a {kinds} file.") from None
        return self.normalize_batch(arr[None])


# 50 megapixels: far above any camera frame a model input is made from, while its decoded
# RGB pixels (150 MB) still fit a small device. A 410 KB PNG can declare 12000 x 12000.
MAX_IMAGE_PIXELS = 50_000_000

