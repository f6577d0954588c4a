"""Evaluation metrics: KID over random splits, feature extractors, power spectra and figures (paper §5.5–5.6; docs/evaluation.md)."""

from .features import (
    EXTRACTORS,
    INCEPTION_FILE,
    FeatureExtractor,
    InceptionV3FID,
    LocalFeatures,
    build_extractor,
    extract_features,
    load_inception,
)
from .kid import kid, kid_splits, mmd2_unbiased, polynomial_kernel, summarize
from .plots import kid_boxplot, spectra_plot
from .spectra import radial_power_spectrum

__all__ = [
    "EXTRACTORS",
    "INCEPTION_FILE",
    "FeatureExtractor",
    "InceptionV3FID",
    "LocalFeatures",
    "build_extractor",
    "extract_features",
    "load_inception",
    "kid",
    "kid_splits",
    "mmd2_unbiased",
    "polynomial_kernel",
    "summarize",
    "kid_boxplot",
    "spectra_plot",
    "radial_power_spectrum",
]
