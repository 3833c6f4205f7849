"""The built-in models, one module each (the network and its ``@register_model``), found by
discovery: the model registry (:mod:`spikedistill.models.registry`) imports every module of this
package whose name does not start with ``_`` (in name order) on its first query. A new built-in
model is one new file here, nothing else; ``_*.py`` modules would hold shared helpers
(the shared blocks live in :mod:`spikedistill.models.common`)."""
