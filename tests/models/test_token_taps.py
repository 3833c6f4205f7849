"""Token outputs of a teacher on the patch grid (models/taps.py ``tokens``): the layout by hand,
a tiny random timm ViT whose logits the layout leaves unchanged, Grad-CAM of its block output
against Grad-CAM computed by hand with autograd, one CKD step Spikformer <- ViT."""

from __future__ import annotations

import pytest
import torch

timm = pytest.importorskip("timm")

from spikedistill.distill import DistillConfig, build_method, grad_cam  # noqa: E402
from spikedistill.models import create_model  # noqa: E402
from spikedistill.models.external import create_external  # noqa: E402
from spikedistill.models.taps import grid_to_tokens, tokens_to_grid  # noqa: E402

VIT_KW = {"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 3, "num_heads": 2}


def _vit(features=("blocks.0", "blocks.1", "blocks.2"), seed=0):
    torch.manual_seed(seed)
    return create_external("timm", "vit_tiny_patch16_224", num_classes=5, in_channels=3,
                           kwargs=dict(VIT_KW), features=list(features), classifier="head",
                           input_shape=(3, 16, 16), key="teacher").eval()


def test_layout_by_hand_and_round_trip():
    X = torch.arange(2 * 5 * 3, dtype=torch.float32).view(2, 5, 3)   # B=2, 1 + 2x2 tokens, C=3
    F = tokens_to_grid(X, prefix=1, grid=(2, 2))
    assert F.shape == (2, 3, 2, 2)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    assert F[b, c, i, j] == X[b, 1 + i * 2 + j, c]
    assert torch.equal(grid_to_tokens(F, X[:, :1]), X)
    with pytest.raises(RuntimeError, match="patch grid"):
        tokens_to_grid(torch.zeros(1, 6, 3), prefix=1)       # 5 tokens: no square grid


def test_vit_taps_are_grids_and_leave_the_logits_unchanged():
    model = _vit()
    assert model.tokens == "grid" and model.feature_channels == (32, 32, 32)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        logits, feats = model(x, return_features=True)
        plain = model.net(x)
    assert [tuple(f.shape) for f in feats] == [(3, 32, 4, 4)] * 3
    assert torch.equal(logits, plain)
    kept = create_external("timm", "vit_tiny_patch16_224", num_classes=5, in_channels=3,
                           kwargs=dict(VIT_KW), features=["blocks.0"], classifier="head",
                           key="teacher")
    kept.tokens = "keep"
    with torch.no_grad():
        assert kept(x, return_features=True)[1][0].shape == (3, 17, 32)


def test_gradcam_of_a_vit_block_equals_gradcam_by_hand():
    """Grad-CAM on the grid tap == by hand on the tokens: a_c = mean over the 16 patch tokens
    of dy_k/dX[b, n, c]; M[b, i, j] = ReLU(sum_c a_c X[b, 1 + 4 i + j, c])."""
    model = _vit()
    x = torch.randn(4, 3, 16, 16)
    classes = torch.tensor([0, 3, 1, 4])
    # ours, through the tap (what CKD's _teacher_with_gradcam does)
    with torch.enable_grad():
        xin = x.clone().requires_grad_(True)
        logits, feats = model(xin, return_features=True)
        ours = grad_cam(logits, feats[1], classes)
    # by hand, on the raw timm network with a plain hook on blocks.1
    seen = {}
    handle = model.net.blocks[1].register_forward_hook(lambda m, i, o: seen.__setitem__("X", o))
    with torch.enable_grad():
        out = model.net(x.clone().requires_grad_(True))
        y = out.gather(1, classes.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(y, seen["X"])
    handle.remove()
    X = seen["X"].detach()
    a = g[:, 1:, :].mean(dim=1)                                       # [B, C]
    want = torch.relu((X[:, 1:, :] * a[:, None, :]).sum(-1)).view(4, 4, 4)
    assert ours.shape == (4, 4, 4)
    assert ours.abs().sum() > 0
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-7)


def test_ckd_step_spikformer_student_vit_teacher():
    """Taps pair by position: student (sps, block1, block2) 4x4 grids at 16x16 input <->
    teacher (blocks.0, blocks.1, blocks.2) 4x4 grids (patch 4); SAMD at every stage with
    Grad-CAM teacher maps."""
    teacher = _vit()
    torch.manual_seed(1)
    student = create_model("spikformer_4_384", num_classes=5, T=2, depth=2, dim=32)
    from spikedistill.config import build_config
    cfg = build_config({}, ["distill.method=ckd", "distill.ckd.samd.teacher_map=gradcam_label",
                            "distill.ckd.samd.stages=[1, 2, 3]"]).distill
    assert isinstance(cfg, DistillConfig)
    d = build_method("ckd", student, teacher, cfg).train()
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 3])
    t_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    s_before = [p.detach().clone() for p in student.parameters()]
    logits, losses = d(x, y)
    assert logits.shape == (4, 5) and {"ce", "samd", "nld"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["samd"] > 0
    opt = torch.optim.SGD(list(d.trainable_parameters()), lr=0.1)
    opt.zero_grad()
    sum(losses.values()).backward()
    opt.step()
    assert any(not torch.equal(p.detach(), b) for p, b in zip(student.parameters(), s_before))
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, t_before[k]) for k, v in teacher.state_dict().items())
