"""Attribution targets as objectives, and the boundary errors of helpers/_checks.py."""

import importlib
import pkgutil
import types

import numpy as np
import pytest
import torch

import helpers
from helpers import (
    capture_activations,
    deconvnet,
    fgsm,
    fooling_image,
    grad_cam,
    guided_backprop,
    guided_grad_cam,
    max_activating_patches,
    modified_backprop,
    normalize,
    occlusion_map,
    saliency_map,
    top_filters,
)
from helpers.objectives import channel_max, channel_mean, class_logit


def photo(n=2, size=12):
    torch.manual_seed(1)
    return normalize(torch.rand(n, 3, size, size))


METHODS = {
    "saliency_map": lambda m, x, t: saliency_map(m, x, t),
    "guided_backprop": lambda m, x, t: guided_backprop(m, x, t),
    "deconvnet": lambda m, x, t: deconvnet(m, x, t),
    "modified_backprop": lambda m, x, t: modified_backprop(m, x, t, rule="backprop"),
    "grad_cam": lambda m, x, t: grad_cam(m, x, t, layer="features.3"),
    "guided_grad_cam": lambda m, x, t: guided_grad_cam(m, x, t, layer="features.3"),
    "occlusion_map": lambda m, x, t: occlusion_map(m, x, t, patch=4, stride=4),
    "fooling_image": lambda m, x, t: fooling_image(m, x, t, lr=0.5, max_steps=3).image,
    "fgsm": lambda m, x, t: fgsm(m, x, t),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("classes", [2, [1, 3]])
def test_a_class_objective_gives_the_same_result_as_the_int(tiny_cnn, method, classes):
    x = photo()
    run = METHODS[method]
    by_int = run(tiny_cnn, x, classes)
    by_objective = run(tiny_cnn, x, class_logit(classes))
    assert by_int.abs().sum() > 0 and torch.equal(by_int, by_objective)


def test_saliency_of_a_channel_objective_is_its_input_gradient(tiny_cnn):
    x = photo()
    objective = channel_mean("features.3", 5) + 0.5 * class_logit(1)
    xg = x.clone().requires_grad_(True)
    with capture_activations(tiny_cnn, "features.3") as acts:
        logits = tiny_cnn(xg)
    score = acts["features.3"][:, 5].mean((1, 2)) + 0.5 * logits[:, 1]
    (grad,) = torch.autograd.grad(score.sum(), xg)
    assert torch.allclose(saliency_map(tiny_cnn, x, objective), grad.abs().amax(1), atol=1e-6)


def test_occlusion_of_an_objective_is_the_drop_of_its_value(tiny_cnn):
    x = photo(1, 8)
    objective = channel_mean("features.5", 3)
    drops = occlusion_map(tiny_cnn, x, objective, patch=4, stride=4)  # four disjoint patches

    def value(img):
        with torch.no_grad(), capture_activations(tiny_cnn, "features.5") as acts:
            tiny_cnn(img)
        return acts["features.5"][0, 3].mean()

    for top in (0, 4):
        for left in (0, 4):
            covered = x.clone()
            covered[..., top:top + 4, left:left + 4] = 0
            expected = value(x) - value(covered)
            assert torch.allclose(drops[0, top:top + 4, left:left + 4], expected.expand(4, 4), atol=1e-6)
    with pytest.raises(ValueError, match="one image at a"):
        occlusion_map(tiny_cnn, photo(2, 8), channel_mean("features.5", [1, 2]), patch=4)


def test_targets_that_cannot_work_are_refused(tiny_cnn):
    x = photo()
    with pytest.raises(ValueError, match="cross-entropy of a class"):
        saliency_map(tiny_cnn, x, channel_mean("features.3", 0), loss=True)
    with pytest.raises(ValueError, match="needs a class"):
        fooling_image(tiny_cnn, x, channel_mean("features.3", 0))
    with pytest.raises(ValueError, match="scores 3 images but the batch has 2"):
        saliency_map(tiny_cnn, x, class_logit([0, 1, 2]))
    with pytest.raises(ValueError, match="class index"):
        grad_cam(tiny_cnn, x, "cat")


# ---------------------------------------------------------------- boundary errors with the fix (issue 13 step 6)

def test_an_image_too_small_for_the_layer_names_the_smallest_size_that_works():
    from torch import nn

    from helpers import render
    from helpers.receptive import smallest_input

    torch.manual_seed(0)
    # conv 5x5 stride 2 then conv 3x3, no padding: the second needs 3 positions, so (n - 5) // 2 + 1 >= 3, n >= 9
    model = nn.Sequential(nn.Conv2d(3, 4, 5, stride=2), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.Flatten(1),
                          nn.LazyLinear(2)).eval()
    model(torch.zeros(1, 3, 9, 9))  # materialize the lazy layer
    assert smallest_input(model, "2") == 9 and smallest_input(model) == 9 and smallest_input(model, "0") == 5
    with pytest.raises(ValueError, match=r"8x8 px is too small for layer '2'.* at least 9x9 px"):
        render(model, channel_mean("2", 1), start=8, steps=1)
    assert render(model, channel_mean("2", 1), start=9, steps=1).image.shape == (1, 3, 9, 9)
    with pytest.raises(ValueError, match=r"too small for the model's last convolution/pooling layer '2'.* 9x9"):
        saliency_map(model, torch.zeros(1, 3, 7, 7), 0)


def test_tiny_cnn_too_small_and_a_layer_without_channels(tiny_cnn):
    from helpers import render, visualize_filter

    with pytest.raises(ValueError, match=r"1x1 px is too small .*'features.5'.* at least 2x2"):
        grad_cam(tiny_cnn, torch.zeros(1, 3, 1, 1), 0, layer="features.0")
    for call in (lambda: visualize_filter(tiny_cnn, "classifier.2", 1, steps=1, start=8),
                 lambda: render(tiny_cnn, channel_mean("classifier.2", 1), start=8, steps=1),
                 lambda: guided_backprop(tiny_cnn, photo(), channel_max("classifier.2", 1))):
        with pytest.raises(ValueError, match=r"'classifier.2' \(Linear\) gives \(N, 5\).*no channels.*'features.5'"):
            call()


@pytest.mark.parametrize("channels, fix", [(1, r"x.expand\(-1, 3, -1, -1\)"), (4, r"x\[:, :3\]")])
def test_a_grey_or_rgba_tensor_says_how_to_convert_it(tiny_cnn, channels, fix):
    from helpers import render

    x = torch.zeros(2, channels, 8, 8)
    for call in (lambda: saliency_map(tiny_cnn, x, 0), lambda: grad_cam(tiny_cnn, x[0], 0),
                 lambda: occlusion_map(tiny_cnn, x, 0, patch=4), lambda: fgsm(tiny_cnn, x, 0),
                 lambda: render(tiny_cnn, channel_mean("features.5", 0), start=x, steps=1)):
        with pytest.raises(ValueError, match=fix):
            call()
    assert torch.equal(saliency_map(tiny_cnn, x.expand(-1, 3, -1, -1) if channels == 1 else x[:, :3], 0),
                       saliency_map(tiny_cnn, torch.zeros(2, 3, 8, 8), 0))


# ---------------------------------------------------------------- one argument vocabulary (issue 13 step 4)

def test_visualize_filter_start_is_an_image_or_its_size_and_fill_its_pixels(tiny_cnn):
    """start= is the start image or its size (a pair of ints is (H, W)) and fill= its pixels, as in render."""
    from helpers import normalize, visualize_filter

    opts = dict(steps=1, lr=0.0)  # no update: the result is the start image
    const = visualize_filter(tiny_cnn, "features.5", 1, start=(8, 12), fill=0.5, **opts).image
    assert const.shape == (1, 3, 8, 12) and torch.allclose(const, normalize(torch.full((1, 3, 8, 12), 0.5)), atol=1e-6)
    photo = normalize(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.allclose(visualize_filter(tiny_cnn, "features.5", 1, start=photo, **opts).image, photo, atol=1e-6)
    with pytest.raises(ValueError, match=r"a start size must be positive .* is fill=, e\.g\. fill=\(0\.0, 1\.0\)"):
        visualize_filter(tiny_cnn, "features.5", 1, start=(0, 1), **opts)  # a noise range given as start=


def test_every_ascent_takes_start_and_fill():
    import inspect

    import helpers

    for name in ("visualize_filter", "visualize_class", "visualize_diverse",
                 "invert_features", "synthesize_texture", "render"):
        params = inspect.signature(getattr(helpers, name)).parameters
        assert params["start"].kind is inspect.Parameter.KEYWORD_ONLY and "fill" in params, name
        assert "size" not in params, name


def test_clamp_is_on_by_default_everywhere(tiny_cnn):
    import inspect

    import helpers
    from helpers import valid_range, visualize_filter

    for name in ("visualize_filter", "visualize_class", "visualize_diverse",
                 "invert_features", "synthesize_texture", "deep_dream", "render"):
        assert inspect.signature(getattr(helpers, name)).parameters["clamp"].default is True, name
    # the case: SGD at lr 1e30 used to return a 1e27-valued image; clamped, it stays a picture
    res = visualize_filter(tiny_cnn, "features.5", 0, steps=3, start=8, optimizer="sgd", lr=1e30)
    low, high = valid_range(res.image)
    assert ((res.image >= low - 1e-6) & (res.image <= high + 1e-6)).all()


def test_every_ascent_wrapper_takes_amp_and_channels_last(tiny_cnn):
    import inspect

    import helpers
    from helpers import visualize_class

    for name in ("visualize_filter", "visualize_class", "visualize_diverse",
                 "invert_features", "synthesize_texture", "deep_dream", "render"):
        params = inspect.signature(getattr(helpers, name)).parameters
        assert params["amp"].default is False and params["channels_last"].default is None, name
    a = visualize_class(tiny_cnn, 1, start=8, steps=3, channels_last=True)
    b = visualize_class(tiny_cnn, 1, start=8, steps=3, channels_last=False)
    assert torch.allclose(a.image, b.image, atol=1e-5)


def test_deep_dream_and_top_filters_take_one_3_h_w_image(tiny_cnn):
    from helpers import deep_dream, top_filters

    x = photo(1, 16)
    top = top_filters(tiny_cnn, x[0], "features.5", 4)
    assert torch.equal(top.values, top_filters(tiny_cnn, x, "features.5", 4).values)
    values, indices = top  # torch.topk's order and names
    assert indices.dtype == torch.long and (values[:, :-1] >= values[:, 1:]).all()
    one = deep_dream(tiny_cnn, x[0], "features.3", steps=2, octaves=2, jitter=2)
    assert torch.equal(one.image, deep_dream(tiny_cnn, x, "features.3", steps=2, octaves=2, jitter=2).image)


def test_truncated_passes_explain_a_too_small_image_too(tiny_cnn):
    from helpers import TruncatedForward, extract_features, top_filters

    with pytest.raises(ValueError, match=r"1x1 px is too small for layer 'features.5'.* at least 2x2"):
        top_filters(tiny_cnn, torch.zeros(1, 3, 1, 1), "features.5", 2)
    with pytest.raises(ValueError, match="at least 2x2"):
        extract_features(tiny_cnn, torch.zeros(2, 3, 1, 1), "features.6")
    with torch.no_grad(), TruncatedForward(tiny_cnn, "features.5") as forward:
        assert forward(torch.zeros(1, 3, 2, 2))["features.5"].shape == (1, 16, 1, 1)  # 2 px is enough


def test_fooling_explains_a_too_small_image_and_local_contrast_a_grey_one(tiny_cnn):
    from helpers import local_contrast

    with pytest.raises(ValueError, match="at least 2x2"):
        fgsm(tiny_cnn, normalize(torch.rand(1, 3, 1, 1)), 0)
    with pytest.raises(ValueError, match=r"x.expand\(-1, 3, -1, -1\)"):
        local_contrast(torch.zeros(1, 1, 8, 8), 3)


def test_no_function_of_the_package_hides_a_module_of_the_same_name():
    # `import helpers.toolbox.engine as E` must give the module: a function exported under a module's name would
    # replace the attribute (as `helpers.render`, the function, once hid `helpers/render.py`)
    names = [m.name for m in pkgutil.walk_packages(helpers.__path__, "helpers.")]
    assert {"helpers.hooks", "helpers.toolbox", "helpers.toolbox.engine", "helpers.trust.scores"} <= set(names)
    for name in names:
        module = importlib.import_module(name)
        parent, _, attr = name.rpartition(".")
        found = getattr(importlib.import_module(parent), attr)
        assert isinstance(found, types.ModuleType) and found is module, name


# ---------------------------------------------------------------- one index normalization (review finding 8)

@pytest.mark.parametrize("given, expected", [
    (3, (3,)), ([1, 2], (1, 2)), ((4,), (4,)), (torch.tensor(2), (2,)), (torch.tensor([5, 0]), (5, 0)),
    (np.int64(1), (1,)), (np.array([2, 3], dtype=np.int32), (2, 3)), ([torch.tensor(1), np.int16(2)], (1, 2)),
])
def test_indices_accept_ints_sequences_integer_tensors_and_numpy(given, expected):
    from helpers._checks import indices

    got = indices(given, "a channel")
    assert got == expected and all(type(i) is int for i in got)


@pytest.mark.parametrize("given", [True, 1.0, [], [1.5], [True], "12", None, torch.tensor([1.0]),
                                   torch.tensor(True), torch.tensor([[1, 2]]), np.array([0.5])])
def test_indices_refuse_bools_floats_empty_and_2d_in_one_line(given):
    from helpers._checks import index, indices

    with pytest.raises(ValueError, match=r"^a channel must be an integer index .*, got ") as info:
        indices(given, "a channel")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"^a channel must be one integer index"):
        index(given, "a channel")


def test_the_sheet5_workflow_feeds_top_filters_indices_to_every_channel_argument(tiny_cnn):
    from helpers import objectives, top_activations, visualize_class, visualize_filter

    x = photo(1, 16)
    _, idx = top_filters_of(tiny_cnn, x)
    c0, c1 = idx[0].tolist()
    one = visualize_filter(tiny_cnn, "features.3", idx[0], steps=2, start=8)
    assert one.channels == [c0, c1] and all(type(c) is int for c in one.channels)
    assert torch.equal(one.image, visualize_filter(tiny_cnn, "features.3", [c0, c1], steps=2, start=8).image)
    assert visualize_filter(tiny_cnn, "features.3", idx[0, 0], steps=1, start=8).channels == [c0]
    assert visualize_filter(tiny_cnn, "features.3", np.int64(c1), steps=1, start=8).channels == [c1]
    values, _, _ = top_activations(tiny_cnn, x, "features.3", idx[0], k=1)
    assert torch.equal(values, top_activations(tiny_cnn, x, "features.3", [c0, c1], k=1)[0])
    assert visualize_class(tiny_cnn, torch.tensor([1, 2]), start=8, steps=1).classes == [1, 2]
    assert repr(objectives.class_logit(torch.tensor(1))) == "class_logit(1)"
    assert repr(objectives.channel_mean("features.3", np.int64(2))) == "channel_mean('features.3', 2)"
    with pytest.raises(ValueError, match=r"channel\(s\) \[9\] out of range .* 0 to 7"):  # plain ints, not tensor(9)
        top_activations(tiny_cnn, x, "features.3", torch.tensor([9]), k=1)
    with pytest.raises(ValueError, match=r"class\(es\) \[7\] out of range"):
        visualize_class(tiny_cnn, torch.tensor([7]), start=8, steps=1)
    with pytest.raises(ValueError, match=r"pick one row, e.g. idx\[0\]"):
        visualize_filter(tiny_cnn, "features.3", idx, steps=1, start=8)


def top_filters_of(model, x):
    from helpers import top_filters

    return top_filters(model, x, "features.3", 2)


# ---------------------------------------------------------------- counts and collections (review finding 10)

def test_top_filters_of_a_layer_without_channel_maps_names_the_last_conv(tiny_cnn):
    from helpers import top_filters

    with pytest.raises(ValueError, match=r"'classifier.2' \(Linear\) gives \(N, 5\).*no channels.*'features.5'"):
        top_filters(tiny_cnn, photo(1, 8), "classifier.2", 2)


def test_counts_are_checked_as_positive_ints(tiny_cnn):
    from helpers import invert_features, synthesize_texture, top_activations, visualize_diverse

    x = photo(1, 8)
    for call, name in ((lambda: visualize_diverse(tiny_cnn, "features.5", 1, start=8, n="2", steps=1), "n"),
                       (lambda: visualize_diverse(tiny_cnn, "features.5", 1, start=8, n=2, steps=0), "steps"),
                       (lambda: synthesize_texture(tiny_cnn, x, "features.3", steps="3"), "steps"),
                       (lambda: synthesize_texture(tiny_cnn, x, "features.3", n=0, steps=1), "n"),
                       (lambda: invert_features(tiny_cnn, x, "features.3", steps=2.0), "steps"),
                       (lambda: top_activations(tiny_cnn, x, "features.3", 1, k="1"), "k"),
                       (lambda: top_filters_of_k(tiny_cnn, x, "2"), "k")):
        with pytest.raises(ValueError, match=rf"^{name}\b.* must be an integer >= \d, got"):
            call()


def top_filters_of_k(model, x, k):
    from helpers import top_filters

    return top_filters(model, x, "features.3", k)


def test_collections_take_one_image_and_explain_grey_rgba_and_too_small_images(tiny_cnn):
    from helpers import extract_features, max_activating_patches, top_activations

    x = photo(1, 8)
    assert torch.equal(extract_features(tiny_cnn, x[0], "classifier.2"), extract_features(tiny_cnn, x, "classifier.2"))
    assert torch.equal(top_activations(tiny_cnn, x[0], "features.3", 1, k=2)[0],
                       top_activations(tiny_cnn, x, "features.3", 1, k=2)[0])
    assert max_activating_patches(tiny_cnn, x[0], "features.3", 1, k=2).patches.shape[:2] == (1, 2)
    for channels, fix in ((1, r"x.expand\(-1, 3, -1, -1\)"), (4, r"x\[:, :3\]")):
        with pytest.raises(ValueError, match=fix):
            extract_features(tiny_cnn, torch.zeros(2, channels, 8, 8), "classifier.2")
    with pytest.raises(ValueError, match=r"1x1 px is too small .*'features.5'.* at least 2x2"):
        extract_features(tiny_cnn, torch.zeros(2, 3, 1, 1), "classifier.2")  # a Linear layer: its last map


def test_every_technique_names_the_last_conv_for_a_layer_without_channel_maps(tiny_cnn):
    x = photo(1, 12)
    message = r"'classifier.2' \(Linear\) gives \(N, 5\), not channel maps .* the last one, 'features.5'"
    with pytest.raises(ValueError, match=message):
        grad_cam(tiny_cnn, x, 1, layer="classifier.2")
    with pytest.raises(ValueError, match=message):  # not the pooling layer whose geometry comes first
        max_activating_patches(tiny_cnn, x, "classifier.2", [0], k=1)
    with pytest.raises(ValueError, match=message):
        top_filters(tiny_cnn, x, "classifier.2")
