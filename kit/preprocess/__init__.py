"""Fitted transforms from raw input to the network's float32 input, one module per kind of data.

* :mod:`kit.preprocess.tabular`: :class:`Preprocessor` (median imputation and standardization of
  numbers, one-hot categories with an unseen-category policy; columns matched by name).
* :mod:`kit.preprocess.image`: :class:`ImagePreprocessor` (Pillow decoding with a pixel limit,
  channel conversion, the recorded resize policy, per-channel mean/std from the training split).

Both keep their fitted state as JSON; :meth:`Preprocessor.from_dict` reads either kind, so a bundle
loads its preprocessor without knowing which it is.
"""

from __future__ import annotations

from kit.preprocess.image import IMAGE_FORMAT, MAX_PIXELS, DecodedImage, ImagePreprocessor, decode_image, encode_png
from kit.preprocess.tabular import FORMAT, Preprocessor, cat_str, is_missing

__all__ = ["FORMAT", "IMAGE_FORMAT", "MAX_PIXELS", "DecodedImage", "ImagePreprocessor", "Preprocessor", "cat_str",
           "decode_image", "encode_png", "is_missing"]
