"""The lecture's further techniques, beyond what the two sheets ask (``notebooks/gallery.ipynb`` shows each one).

The gradient-ascent engine (:mod:`.engine`, ``render``) and its wrappers: filter and class visualization
(:mod:`.ascent`, :mod:`.classviz`), DeepDream (:mod:`.deepdream`), diverse visualizations (:mod:`.diversity`),
feature inversion (:mod:`.inversion`), texture synthesis (:mod:`.texture`) and adversarial examples
(:mod:`.adversarial`); and occlusion maps (:mod:`.occlusion`), maximally activating patches (:mod:`.patches`) and
feature embeddings (:mod:`.embedding`). These modules import the top level of ``helpers``, never the reverse;
their public names are re-exported by ``helpers`` itself (``H.render``, ``H.occlusion_map``).
"""
