"""KID distributions of checkpoints against the training data, figures and spectra (paper §5.5–5.6; docs/evaluation.md).

Two layers:

- `evaluate_sets(real, generated, extractor, ...)`: the statistics on arrays.  Features of the real
  images and of every generated set; the reference distribution "real splits" (KID between two
  disjoint random halves of the real set, 1000 times: centred on 0 by construction) and, per generated
  set, KID between a random real subset and an equally sized random generated subset, 1000 times.
- `evaluate(checkpoints, data, out, ...)`: reads the prepared dataset, samples every checkpoint, runs
  `evaluate_sets` on whole albedo maps (down-sampled) and on one albedo patch (default: the lips),
  computes the radially averaged power spectra of real vs generated patches per modality and the
  layout measure (where each model puts things, against the data), and writes
  `kid_whole.{json,csv,png}`, `kid_patch.{json,csv,png}`, `spectra.{json,png}`, `layout.{json,png}`
  and `summary.json`.

Modules (the names below are this package's API, importable from `gantlitz.evaluate`):
- `sets`       evaluate_sets, REAL (the reference distribution), checkpoint_labels (the compared sets' names)
- `locations`  where the measures look: NAMED_LOCATIONS, resolve_location, whole_shape, Geometry
- `reading`    the compared sets as arrays: the dataset's subjects and the checkpoints' samples
- `results`    the result files (RESULT_FILES): KID JSON / CSV / box plots, spectra, layout
- `command`    evaluate: the request's checks, the sets, the measures, `summary.json`
Inside: locations, sets ─→ reading, results ─→ command.
"""

from .command import evaluate
from .locations import NAMED_LOCATIONS, resolve_location, whole_shape
from .results import RESULT_FILES
from .sets import REAL, checkpoint_labels, evaluate_sets

__all__ = [
    "REAL",
    "NAMED_LOCATIONS",
    "RESULT_FILES",
    "evaluate_sets",
    "evaluate",
    "resolve_location",
    "whole_shape",
    "checkpoint_labels",
]
