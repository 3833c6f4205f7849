"""The built-in distillation methods: small Distillers around :mod:`..functional`, one module
per method family (``kd.py``, ``kdsnn.py``, ``bkdsnn.py``, ``enof.py``, ``ckd.py``, ``e2kd.py``,
``catkd.py``, ``tks.py``, ``tser_kd.py``, ``hta_kl.py``, ``tdd.py``, ``seal_kd.py``, ``strong_weak.py``, ``deit.py``), each holding
the method, the dataclass of its ``distill.<section>`` and its ``@register_method``.

Discovery: the method registry (:data:`spikedistill.plugins.METHODS`) imports every module of
this package whose name does not start with ``_`` on its first query (in name order). A new
built-in method is one new file here, nothing else. ``_common.py`` holds the shared helpers
(:class:`_TeacherStudent`, :func:`resolve_stage`). Importing this package imports every method
module too and re-exports the names in their ``__all__`` (``from spikedistill.distill.methods
import CKD, KD``).

Every ``forward_train(x, y, ctx=None)`` returns ``(z_s, losses)`` with *already weighted* terms:

=============  ====================================================================
method         losses
=============  ====================================================================
kd             ce, kd                     (``distill.kd``)
kdsnn          ce, kd, feat               (``distill.kdsnn``; 1x1 adapter in ``extras``)
bkdsnn         ce, kd, bkd                (``distill.bkdsnn``; WSLD logits; align + generator in ``extras``)
enof           ce, laf                    (``distill.enof``; Linear adapter if C_s != C_t)
samd           ce, samd                   (``distill.ckd``, NLD off)
nld            ce, nld                    (``distill.ckd``, SAMD off)
ckd            ce, samd, nld              (``distill.ckd``, preset ``distill.ckd.preset``)
ckd-released   ce, samd, nld              (``distill.ckd``, released-code preset)
ckd-paper      ce, samd, nld              (``distill.ckd``, paper preset)
e2kd           ce, kd, exp                (``distill.e2kd``; teacher Grad-CAM vs student CAM)
catkd          ce, cat [, kd]             (``distill.catkd``; CAMs of all K; kd if kd_weight > 0)
tks            ce, tks                    (``distill.tks``; no teacher, per-timestep logits)
tdd            ce, kd, self               (``distill.tdd``; per-timestep CE, KL to ANN and to self)
seal-kd        ce, ela, sta               (``distill.seal_kd``; error-aware + temporal alignment)
s2w            ce, sd                     (``distill.s2w``; no teacher; paper only, unverified)
w2s            ce, sd                     (``distill.w2s``; no teacher; paper only, unverified)
deit           ce, kd                     (``distill.deit``; second head, ``model.distill_head: true``)
tser-kd        ce, kd, er                 (``distill.tser_kd``; per-timestep; not verified)
hta-kl         ce, hta                    (``distill.hta_kl``; AKL as released; not verified)
hta-kl-asc...   ce, hta                    (``distill.hta_kl``; ``hta-kl-ascending``, the earlier reading)
=============  ====================================================================

``tser-kd`` and ``hta-kl`` are not verified against their papers' equations (only the
abstracts were reachable); ``docs/methods.md`` says what each follows instead (a public
implementation and the AKL code, checked in ``tests/distill/test_authors_code.py``).

Teacher outputs are always targets (detached), also with ``teacher.mode=released``.

Students and teachers are :class:`~spikedistill.models.contract.DistillModel` s: the number of
stages and their channels ``C_i`` come from ``feature_channels``, the pooled feature from
``pool(F_n)``, CAM weights from ``classifier_weight()`` and the teacher's head from
``classifier``; nothing assumes a particular architecture. Inputs may be images
``[B, C, H, W]`` or frames ``[T, B, C, H, W]`` (the teacher sees them as ``teacher.frames`` says,
:meth:`~spikedistill.distill.base.Distiller.run_teacher`).
"""

from __future__ import annotations

from typing import List

from spikedistill.distill.methods._common import _TeacherStudent, resolve_stage  # noqa: F401
from spikedistill.plugins import import_submodules


def _export_methods() -> List[str]:
    names: List[str] = []
    for module in import_submodules(__name__):
        for name in getattr(module, "__all__", ()):
            globals()[name] = getattr(module, name)
            names.append(name)
    return names


__all__ = ["resolve_stage", *_export_methods()]
