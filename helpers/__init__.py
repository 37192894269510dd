"""cnnvis helpers: every visualization technique of the course as one tested call.

One module per concern; the public names are re-exported here.
"""

from .activations import (
    activation_grid,
    activation_pca,
    channel_mean,
    explained_variance_ratio,
    pca_rgb,
    upsample_map,
)
from .adversarial import FoolingResult, fgsm, fooling_image
from .ascent import AscentResult, TruncatedForward, frozen_eval, top_filters, visualize_filter
from .classviz import L2PlusPlus, visualize_activation, visualize_class
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
    TensorLoader,
    cifar10_dataset,
    cifar10_loaders,
    cifar10_transform,
    random_crop_flip,
    synthetic_cifar10_images,
    write_synthetic_cifar10,
)
from .deepdream import DREAM_LAYERS, DreamResult, deep_dream
from .diversity import DiversityResult, gram_similarity, visualize_diverse
from .embedding import extract_features, nearest_neighbors, tsne_embedding
from .filters import filter_tiles, filter_weights, range_map, symmetric_scale
from .gradcam import default_cam_layer, grad_cam, guided_grad_cam
from .guided import deconvnet, guided_backprop, modified_backprop, relu_backward, relu_rule
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
from .inversion import InversionResult, invert_features
from .models import (
    LeNet,
    OfflineStandInWarning,
    WeightsUnavailableError,
    count_parameters,
    pretrained_model,
    weights_path,
)
from .occlusion import occlusion_map
from .patches import (
    Geometry,
    Patches,
    crop_window,
    layer_geometry,
    load_images,
    max_activating_patches,
    top_activations,
)
from .plotting import (
    plot_accuracy,
    plot_channels,
    plot_embedding,
    plot_filter_grid,
    plot_filters,
    plot_fooling,
    plot_gradient_image,
    plot_image_grid,
    plot_map,
    plot_neighbors,
    plot_objective,
    plot_overlay,
    plot_patches,
    plot_saliency,
    show_image,
)
from .receptive import Box, conv_output_size, input_gradient, input_gradient_support, receptive_field
from .regularizers import l2, total_variation, tv_per_pixel
from .saliency import saliency_map
from .source import show_source
from .speed import channels_last_weights, fast_bf16, lean_loop, roomy_malloc
from .texture import TextureResult, gram_matrix, synthesize_texture
from .training import History, evaluate, fit

__all__ = [
    # gallery: attribution
    "FoolingResult",
    "deconvnet",
    "default_cam_layer",
    "fgsm",
    "fooling_image",
    "grad_cam",
    "guided_backprop",
    "guided_grad_cam",
    "modified_backprop",
    "occlusion_map",
    "plot_fooling",
    "plot_gradient_image",
    "relu_backward",
    "relu_rule",
    # gallery: inspection
    "Geometry",
    "Patches",
    "activation_grid",
    "crop_window",
    "extract_features",
    "filter_tiles",
    "filter_weights",
    "layer_geometry",
    "load_images",
    "max_activating_patches",
    "nearest_neighbors",
    "pca_rgb",
    "plot_embedding",
    "plot_filters",
    "plot_neighbors",
    "plot_patches",
    "range_map",
    "symmetric_scale",
    "top_activations",
    "tsne_embedding",
    # gallery: optimization
    "DiversityResult",
    "InversionResult",
    "L2PlusPlus",
    "TextureResult",
    "gram_matrix",
    "gram_similarity",
    "invert_features",
    "synthesize_texture",
    "visualize_activation",
    "visualize_class",
    "visualize_diverse",
    # sheet 5
    "AscentResult",
    "DREAM_LAYERS",
    "DreamResult",
    "TruncatedForward",
    "deep_dream",
    "fast_bf16",
    "channels_last_weights",
    "lean_loop",
    "roomy_malloc",
    "frozen_eval",
    "plot_filter_grid",
    "plot_objective",
    "top_filters",
    "visualize_filter",
    # sheet 4
    "Box",
    "activation_pca",
    "channel_mean",
    "conv_output_size",
    "explained_variance_ratio",
    "input_gradient",
    "input_gradient_support",
    "plot_channels",
    "plot_image_grid",
    "plot_map",
    "plot_overlay",
    "plot_saliency",
    "receptive_field",
    "saliency_map",
    "upsample_map",
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
    "TensorLoader",
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
    "random_crop_flip",
    "show_image",
    "show_source",
    "synthetic_cifar10_images",
    "to_image",
    "total_variation",
    "tv_per_pixel",
    "valid_range",
    "weights_path",
    "write_synthetic_cifar10",
]
