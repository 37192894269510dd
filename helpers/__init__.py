"""cnnvis helpers: every visualization technique of the course as one tested call.

One module per concern. At the top of ``helpers``: what the two sheets run (activations, saliency, Grad-CAM,
receptive fields, training, sheet 5's plain loops in ``filtervis``, the measures) and what everything shares
(images, data, models, hooks, objectives, plots, settings; ``_checks`` is the one private module).
``helpers.toolbox``: the lecture's further techniques (the gradient-ascent engine ``render`` and its wrappers,
occlusion, patches, embeddings, adversarial examples). ``helpers.trust``: attribution checked where the evidence is
known. Imports point one way: trust -> toolbox -> top level.

The public names are re-exported here, grouped in ``__all__`` by concept: techniques (attribution, gradient ascent,
inspection, scoring maps), objectives, results, models and loaders, plots, layers and model state, notebook
settings. Infrastructure is imported from its module: ``helpers.speed`` (``roomy_malloc``, ``lean_loop``,
``channels_last_weights``), ``helpers.config`` (``progress``, ``progress_enabled``, ``offline_opt_in``,
``PROJECT_ROOT``).
"""

from . import objectives
from .activations import (
    activation_grid,
    activation_pca,
    explained_variance_ratio,
    mean_over_channels,
    pca_rgb,
    upsample_map,
)
from .config import (
    DATA_DIR,
    FIGURES_DIR,
    default_device,
    pick,
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
    synthetic_images_with_masks,
    synthetic_two_object_images,
    write_synthetic_cifar10,
)
from .figures import print_stand_in_note, save_figure
from .filters import filter_tiles, filter_weights, range_map, symmetric_scale
from .gradcam import default_cam_layer, grad_cam, guided_grad_cam
from .guided import deconvnet, guided_backprop, modified_backprop, relu_backward, relu_rule
from .hooks import TruncatedForward, capture_activations, frozen_eval, get_layer, layer_names
from .images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    course_photo,
    denormalize,
    load_image,
    load_images,
    normalize,
    photo_set,
    sample_photo,
    to_image,
    valid_range,
)
from .measures import (
    accuracy_difference,
    accuracy_summary,
    central_box,
    contrast_correlation,
    correct_predictions,
    map_correlation,
    monte_carlo_p,
    top_inside,
)
from .models import (
    LeNet,
    OfflineStandInWarning,
    WeightsUnavailableError,
    count_parameters,
    pretrained_model,
    weights_path,
)
from .objectives import Objective
from .parallel import fit_many
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
from .receptive import (
    Box,
    Geometry,
    conv_output_size,
    input_gradient,
    input_gradient_support,
    layer_geometry,
    receptive_field,
)
from .regularizers import l2, total_variation
from .saliency import centre_of_mass, class_saliency, local_contrast, saliency_map, top_overlap
from .source import show_source
from .speed import fast_bf16
from .toolbox.adversarial import FoolingResult, fgsm, fooling_image
from .toolbox.ascent import AscentResult, L2PlusPlus, top_filters, visualize_filter
from .toolbox.classviz import ClassResult, visualize_class
from .toolbox.deepdream import DREAM_LAYERS, DreamResult, deep_dream
from .toolbox.diversity import DiversityResult, gram_similarity, visualize_diverse
from .toolbox.embedding import extract_features, nearest_neighbors, tsne_embedding
from .toolbox.engine import RenderResult, jitter, objective_score, render
from .toolbox.inversion import InversionResult, invert_features
from .toolbox.occlusion import occlusion_map
from .toolbox.patches import Patches, crop_window, max_activating_patches, top_activations
from .toolbox.texture import TextureResult, gram_matrix, synthesize_texture
from .training import History, evaluate, fit, train_epoch
from .trust.groundtruth import (
    GapCNN,
    StandIn,
    StandInSettings,
    SynthesisChecks,
    synthesis_checks,
    synthetic_split,
    trained_stand_in,
    two_object_split,
)
from .trust.scores import (
    Curve,
    Randomization,
    angle_difference,
    as_map,
    attribution_methods,
    axis_energy_ratio,
    cascading_randomization,
    class_sensitivity,
    deletion_curve,
    dominant_orientation,
    insertion_curve,
    localization_scores,
    mask_energy,
    pointing_game,
)

__all__ = [
    # techniques: attribution (which pixels explain a target: a class or an objective)
    "saliency_map",
    "class_saliency",
    "occlusion_map",
    "guided_backprop",
    "deconvnet",
    "modified_backprop",
    "relu_backward",
    "relu_rule",
    "grad_cam",
    "guided_grad_cam",
    "default_cam_layer",
    "fooling_image",
    "fgsm",
    # techniques: gradient ascent, one engine (render) and its wrappers
    "render",
    "jitter",
    "objective_score",
    "visualize_filter",
    "top_filters",
    "visualize_class",
    "L2PlusPlus",
    "deep_dream",
    "DREAM_LAYERS",
    "visualize_diverse",
    "invert_features",
    "synthesize_texture",
    # techniques: inspecting activations, filters, receptive fields, embeddings
    "capture_activations",
    "activation_grid",
    "activation_pca",
    "mean_over_channels",
    "explained_variance_ratio",
    "pca_rgb",
    "upsample_map",
    "filter_tiles",
    "filter_weights",
    "range_map",
    "symmetric_scale",
    "max_activating_patches",
    "top_activations",
    "crop_window",
    "extract_features",
    "tsne_embedding",
    "nearest_neighbors",
    "conv_output_size",
    "receptive_field",
    "input_gradient",
    "input_gradient_support",
    "layer_geometry",
    "Box",
    "Geometry",
    # techniques: comparing and scoring attribution maps
    "centre_of_mass",
    "top_overlap",
    "local_contrast",
    "pointing_game",
    "mask_energy",
    "deletion_curve",
    "insertion_curve",
    "cascading_randomization",
    "class_sensitivity",
    "localization_scores",
    "attribution_methods",
    "as_map",
    "dominant_orientation",
    "angle_difference",
    "axis_energy_ratio",
    "synthesis_checks",
    # objectives: what to maximize or explain (helpers.objectives, e.g. objectives.channel_mean, objectives.l2)
    "objectives",
    "Objective",
    # statistics of an image or of activations (plain functions, not objectives)
    "l2",
    "total_variation",
    "gram_matrix",
    "gram_similarity",
    # results
    "RenderResult",
    "AscentResult",
    "ClassResult",
    "DreamResult",
    "DiversityResult",
    "InversionResult",
    "TextureResult",
    "FoolingResult",
    "Patches",
    "Curve",
    "Randomization",
    "SynthesisChecks",
    "History",
    # loaders: models, images, data
    "pretrained_model",
    "weights_path",
    "LeNet",
    "GapCNN",
    "count_parameters",
    "fit",
    "fit_many",
    "evaluate",
    "train_epoch",
    # measures the answers rest on (sheet 4)
    "accuracy_difference",
    "accuracy_summary",
    "central_box",
    "contrast_correlation",
    "correct_predictions",
    "map_correlation",
    "monte_carlo_p",
    "top_inside",
    "StandIn",
    "StandInSettings",
    "trained_stand_in",
    "WeightsUnavailableError",
    "OfflineStandInWarning",
    "load_image",
    "load_images",
    "course_photo",
    "photo_set",
    "sample_photo",
    "SAMPLE_PHOTOS",
    "normalize",
    "denormalize",
    "to_image",
    "valid_range",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "cifar10_dataset",
    "cifar10_loaders",
    "cifar10_transform",
    "random_crop_flip",
    "TensorLoader",
    "SyntheticCIFAR10",
    "SYNTHETIC_CLASSES",
    "DataUnavailableError",
    "synthetic_cifar10_images",
    "write_synthetic_cifar10",
    "synthetic_images_with_masks",
    "synthetic_two_object_images",
    "synthetic_split",
    "two_object_split",
    # plots
    "show_image",
    "plot_image_grid",
    "plot_map",
    "plot_overlay",
    "plot_saliency",
    "plot_gradient_image",
    "plot_channels",
    "plot_filters",
    "plot_filter_grid",
    "plot_patches",
    "plot_embedding",
    "plot_neighbors",
    "plot_fooling",
    "plot_objective",
    "plot_accuracy",
    # layers and the caller's model state
    "layer_names",
    "get_layer",
    "TruncatedForward",
    "frozen_eval",
    # notebook settings (the parameters cell) and figures
    "pick",
    "quick_mode",
    "default_device",
    "fast_bf16",
    "stand_in_note",
    "print_stand_in_note",
    "save_figure",
    "DATA_DIR",
    "FIGURES_DIR",
    "show_source",
]
