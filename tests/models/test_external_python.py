"""``source: python``: any ``package.module:factory`` as a teacher or a student."""

from pathlib import Path

import pytest
import torch

from spikedistill.config import load_config
from spikedistill.distill import build_method
from spikedistill.errors import ConfigError
from spikedistill.models import build_model, create_model
from spikedistill.models.external import build_external_teacher
from spikedistill.models.contract import contract_problems
from spikedistill.neurons import LIF

K, SHAPE = 10, (3, 16, 16)


@pytest.fixture
def helpers(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import external_helpers
    return external_helpers


def test_python_teacher_from_weights(helpers, tmp_path):
    torch.manual_seed(0)
    net = helpers.TinyNet(num_classes=K).eval()
    path = tmp_path / "tiny.pth"
    torch.save(net.state_dict(), path)
    cfg = load_config(overrides=["teacher.source=python", "teacher.arch=external_helpers:TinyNet",
                                 f"teacher.weights={path}", "teacher.kwargs={width: 8}",
                                 "teacher.features=[stage1, stage2]", "teacher.classifier=head"])
    teacher, prov = build_external_teacher(cfg.teacher, K, SHAPE)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        assert torch.equal(teacher(x), net(x))
        _, feats = teacher(x, return_features=True)
        assert torch.equal(feats[1], net.stage2(net.stage1(x)))
    assert not teacher.is_spiking and teacher.feature_channels == (8, 16)
    assert prov["arch"] == "external_helpers:TinyNet" and prov["classifier"] == "head"
    assert contract_problems(teacher, x) == []


def test_python_spiking_student(helpers):
    cfg = load_config(overrides=["model.source=python", "model.arch=external_helpers:TinySNN",
                                 "model.features=[lif]", "model.classifier=fc", "model.T=3"])
    torch.manual_seed(0)
    student = build_model(cfg.model, K, 3, SHAPE)
    assert student.is_spiking and student.T == 3 and student.model_role == "student"
    assert [type(m) for _, m in student.spiking_modules()] == [LIF]
    x = torch.randn(2, *SHAPE)
    assert contract_problems(student, x) == []
    rebuilt = create_model(student.model_name, **student.model_kwargs)
    rebuilt.load_state_dict(student.state_dict())
    with torch.no_grad():
        assert torch.equal(rebuilt(x), student(x))
    # one KD step with the python ANN as the teacher
    teacher = create_model("python/external_helpers:TinyNet", num_classes=K, features=["stage2"],
                           classifier="head", input_shape=list(SHAPE))
    assert teacher.model_role == "teacher"
    d = build_method("kd", student, teacher, load_config(overrides=["distill.method=kd"]).distill)
    _, losses = d.forward_train(x, torch.randint(0, K, (2,)))
    sum(losses.values()).backward()
    assert student.net.conv.weight.grad is not None


def test_python_model_errors(helpers, tmp_path):
    base = ["model.source=python", "model.arch=external_helpers:TinyNet"]
    with pytest.raises(ConfigError, match=r"model\.features"):
        build_model(load_config(overrides=base + ["model.classifier=head"]).model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.classifier"):
        build_model(load_config(overrides=base + ["model.features=[stage1]"]).model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.features\[0\].*no module 'stage9'"):
        build_model(load_config(overrides=base + ["model.features=[stage9]",
                                                  "model.classifier=head"]).model, K, 3)
    # a factory without num_classes whose classifier has another K
    with pytest.raises(ConfigError, match=r"model\.classifier.*10 outputs.*K=4"):
        build_model(load_config(overrides=["model.source=python", "model.arch=external_helpers:tiny_net",
                                           "model.features=[stage1]", "model.classifier=head"]).model, 4, 3)
    with pytest.raises(ConfigError, match=r"model\.arch.*returned a int"):
        build_model(load_config(overrides=["model.source=python", "model.arch=external_helpers:not_a_module",
                                           "model.features=[a]", "model.classifier=b"]).model, K, 3)
    with pytest.raises(ConfigError, match=r"model\.arch.*cannot import module 'no_such_pkg_xyz'"):
        build_model(load_config(overrides=["model.source=python", "model.arch=no_such_pkg_xyz:f",
                                           "model.features=[a]", "model.classifier=b"]).model, K, 3)
    # a spiking network is no teacher
    path = tmp_path / "snn.pth"
    torch.save(helpers.TinySNN(num_classes=K).state_dict(), path)
    cfg = load_config(overrides=["teacher.source=python", "teacher.arch=external_helpers:TinySNN",
                                 f"teacher.weights={path}", "teacher.features=[lif]",
                                 "teacher.classifier=fc"])
    with pytest.raises(ConfigError, match=r"teacher\.arch.*spiking neurons; a teacher is an ANN"):
        build_external_teacher(cfg.teacher, K, SHAPE)
