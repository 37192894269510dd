"""cnnvis helpers: every visualization technique of the course as one tested call.

One module per concern; the public names are re-exported here.
"""

from .config import (
    DATA_DIR,
    FIGURES_DIR,
    PROJECT_ROOT,
    default_device,
    offline_opt_in,
    pick,
    progress,
    progress_enabled,
    quick_mode,
    stand_in_note,
)
from .data import (
    SYNTHETIC_CLASSES,
    DataUnavailableError,
    SyntheticCIFAR10,
    cifar10_dataset,
    cifar10_loaders,
    cifar10_transform,
    synthetic_cifar10_images,
    write_synthetic_cifar10,
)
from .hooks import capture_activations, get_layer, layer_names
from .images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    course_photo,
    denormalize,
    load_image,
    normalize,
    photo_set,
    sample_photo,
    to_image,
    valid_range,
)
from .models import (
    LeNet,
    OfflineStandInWarning,
    WeightsUnavailableError,
    count_parameters,
    pretrained_model,
    weights_path,
)
from .plotting import plot_accuracy, show_image
from .regularizers import l2, total_variation
from .training import History, evaluate, fit

__all__ = [
    "SAMPLE_PHOTOS",
    "course_photo",
    "photo_set",
    "sample_photo",
    "stand_in_note",
    "DATA_DIR",
    "FIGURES_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PROJECT_ROOT",
    "SYNTHETIC_CLASSES",
    "DataUnavailableError",
    "History",
    "LeNet",
    "OfflineStandInWarning",
    "SyntheticCIFAR10",
    "WeightsUnavailableError",
    "capture_activations",
    "cifar10_dataset",
    "cifar10_loaders",
    "cifar10_transform",
    "count_parameters",
    "default_device",
    "denormalize",
    "evaluate",
    "fit",
    "get_layer",
    "l2",
    "layer_names",
    "load_image",
    "normalize",
    "offline_opt_in",
    "pick",
    "plot_accuracy",
    "pretrained_model",
    "progress",
    "progress_enabled",
    "quick_mode",
    "show_image",
    "synthetic_cifar10_images",
    "to_image",
    "total_variation",
    "valid_range",
    "weights_path",
    "write_synthetic_cifar10",
]
