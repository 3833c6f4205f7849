"""The streaming pipeline: sampler order and shards, per-sample draws independent of the worker
count, transforms and normalisation against torchvision by hand, pipeline choice, errors,
end-to-end train / distill / evaluate / resume with ``data.pipeline: stream``."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fake_imagenet import make_tree
from spikedistill.config import build_config
from spikedistill.data import epoch_indices
from spikedistill.data.sampler import EpochShardSampler
from spikedistill.data.stream import (StreamLoader, decode_rgb, folder_index,
                                      read_sample, resolve_pipeline)
from spikedistill.errors import ConfigError, DataError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from engine_helpers import crash_after, SimulatedCrash, state_dicts_equal  # noqa: E402


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    make_tree(root, per_class=6, val_per_class=3)
    return root


def _files(tree):
    from spikedistill.data.sets.imagenet import index_imagenet

    return index_imagenet(tree)


# ------------------------------------------------------------------------------------------
# sampler
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,world", [(10, 3), (12, 4), (7, 1), (5, 8)])
def test_sampler_shards_one_permutation_over_all_ranks(n, world):
    samplers = [EpochShardSampler(n, shuffle=True, seed=5, rank=r, world_size=world) for r in range(world)]
    for s in samplers:
        s.set_epoch(3)
    per_rank = [list(s) for s in samplers]
    assert len({len(p) for p in per_rank}) == 1 and len(per_rank[0]) == -(-n // world)
    # the in-memory loader's order, rank by rank
    for r, p in enumerate(per_rank):
        assert [i for i, _ in p] == epoch_indices(n, shuffle=True, seed=5, epoch=3, rank=r,
                                                  world_size=world).tolist()
    # every sample seen; only the wrap-around padding repeats (at most world - 1 samples)
    seen = [i for p in per_rank for i, _ in p]
    assert set(seen) == set(range(n)) and len(seen) - n == (-n) % world
    # draw seeds are distinct per global position (repeats get fresh draws)
    seeds = [d for p in per_rank for _, d in p]
    assert len(set(seeds)) == len(seeds)
    # another epoch is another permutation; a re-created sampler repeats it (resume)
    again = EpochShardSampler(n, shuffle=True, seed=5, rank=0, world_size=world)
    again.set_epoch(3)
    assert list(again) == per_rank[0]
    if n > 3:
        again.set_epoch(4)
        assert [i for i, _ in again] != [i for i, _ in per_rank[0]] or world >= n


def test_eval_sampler_shards_are_disjoint_and_cover():
    shards = [list(EpochShardSampler(11, shuffle=False, rank=r, world_size=3)) for r in range(3)]
    idx = sorted(i for s in shards for i, _ in s)
    assert idx == list(range(11))


# ------------------------------------------------------------------------------------------
# loader
# ------------------------------------------------------------------------------------------

def _loader(files, *, workers=0, shuffle=True, size=24, bs=4, seed=1, **kw):
    return StreamLoader(files, bs, shuffle=shuffle, image_size=size, seed=seed, workers=workers,
                        persistent_workers=False, **kw)


def _batches(loader, epoch):
    loader.set_epoch(epoch)
    return [(x.clone(), y.clone()) for x, y in loader]


def test_batches_do_not_depend_on_the_worker_count(tree):
    files = _files(tree).train
    ref = _batches(_loader(files, workers=0), 2)
    assert len(ref) == 18 // 4                       # drop_last: 4 full batches
    for workers in (1, 2):
        got = _batches(_loader(files, workers=workers), 2)
        assert len(got) == len(ref)
        for (xa, ya), (xb, yb) in zip(ref, got):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
    # another epoch, other crops of the same files
    other = _batches(_loader(files, workers=0), 3)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(ref, other))


def test_a_resumed_loader_sees_the_same_batches_and_the_trainer_rng_is_untouched(tree):
    files = _files(tree).train
    first = _loader(files)
    _batches(first, 0)
    e1 = _batches(first, 1)
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    fresh = _loader(files)                           # as after a restart at epoch 1
    again = _batches(fresh, 1)
    assert torch.equal(torch.random.get_rng_state(), before)
    for (xa, ya), (xb, yb) in zip(e1, again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_streamed_batches_are_mixed_on_the_device_like_the_memory_loader(tree):
    # data.augment.mixup reaches the stream loader: each batch is the unmixed batch passed
    # through the same BatchMixer with the loader's per-epoch generator (as DeviceLoader does)
    from spikedistill.config import AugmentConfig
    from spikedistill.data.mix import BatchMixer

    index = _files(tree)
    files, k = index.train, len(index.class_names)
    mixer = BatchMixer(AugmentConfig(mixup=1.0, mix_prob=1.0), k)
    plain = _loader(files)
    plain.set_epoch(1)
    gen = plain.augment_generator()
    expect = [mixer(x, y, gen, epoch=1) for x, y in plain]
    mixed = _loader(files)
    mixed.mix = mixer
    got = _batches(mixed, 1)
    assert len(got) == len(expect) == 4
    for (xa, ya), (xb, yb) in zip(expect, got):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert yb.shape == (4, k) and torch.allclose(yb.sum(1), torch.ones(4))
    assert any((yb.max(1).values < 1).any() for _, yb in got)     # something was mixed


def test_training_samples_are_random_resized_crops_of_the_file(tree):
    """Each output is RandomResizedCrop + flip of its own decoded file: recomputed by hand from
    the seeded draw with torchvision's functional ops."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F

    files = _files(tree).train
    loader = _loader(files, bs=3)
    loader.set_epoch(0)
    x, y = next(iter(loader))
    assert x.shape == (3, 3, 24, 24) and x.dtype == torch.float32
    for k, (i, draw) in enumerate(list(loader.sampler)[:3]):
        img = decode_rgb(read_sample(files, i), "")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(draw)
            top, left, h, w = v2.RandomResizedCrop.get_params(img, scale=[0.08, 1.0],
                                                               ratio=[3 / 4, 4 / 3])
            flip = torch.rand(1).item() < 0.5
        ref = F.resized_crop(img, top, left, h, w, [24, 24], antialias=True)
        if flip:
            ref = F.horizontal_flip(ref)
        assert torch.allclose(x[k], ref.float() / 255.0), k
        assert int(y[k]) == int(files.labels[i])


def test_eval_batches_are_resize_center_crop_normalised_on_the_device(tree):
    from torchvision.transforms.v2 import functional as F

    from spikedistill.data import build_augment

    files = _files(tree).test
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    loader = _loader(files, shuffle=False, bs=5, augment=build_augment(False, mean, std))
    xs, ys = zip(*list(loader))
    assert [len(y) for y in ys] == [5, 4]            # evaluation keeps the short batch
    x = torch.cat(xs)
    for i in range(len(files)):
        img = decode_rgb(read_sample(files, i), "")
        u8 = F.center_crop(F.resize(img, 27, antialias=True), [24, 24])   # round(24 * 8 / 7) = 27
        ref = (u8.float() / 255.0 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
        assert torch.allclose(x[i], ref, atol=1e-6)
    assert torch.equal(torch.cat(ys), torch.from_numpy(files.labels))


def test_gpu_decode_without_cuda_is_one_line(tree):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match=r"^config key 'data.decode': cuda .* use data.decode=cpu$"):
        _loader(_files(tree).train, decode="cuda")


BAD_JPEG = b"\xff\xd8\xff\xe0" + b"not a picture" * 8     # a JPEG header, then garbage


def test_a_bad_jpeg_in_a_decoded_batch_is_named_and_refused_or_skipped():
    # the GPU-decode path's batch decoder, run here on the CPU device (the same torchvision
    # decode_jpeg(list) call): one bad file fails the batched call; the others still decode
    from torchvision.io import decode_jpeg

    from fake_imagenet import jpeg_bytes
    from spikedistill.data.stream import decode_batch

    rng = np.random.default_rng(0)
    raw = [jpeg_bytes(rng), BAD_JPEG, jpeg_bytes(rng)]
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in raw]
    names = ["n01/a.JPEG", "n01/broken.JPEG", "n02/c.JPEG"]
    with pytest.raises(RuntimeError):
        decode_jpeg(data, device="cpu")          # what made one bad file abort the batch
    with pytest.raises(DataError, match=r"n01/broken\.JPEG.*data\.on_bad_image=skip"):
        decode_batch(data, names, torch.device("cpu"))
    with pytest.warns(RuntimeWarning, match=r"skipping unreadable image n01/broken\.JPEG"):
        images = decode_batch(data, names, torch.device("cpu"), "skip")
    assert images[1] is None
    for k in (0, 2):
        assert torch.equal(images[k], decode_rgb(raw[k], names[k]))


def test_the_cpu_decode_path_refuses_or_skips_a_bad_image_too(tmp_path):
    from spikedistill.data.sets.imagenet import index_imagenet

    make_tree(tmp_path, per_class=2, val_per_class=1)
    bad = sorted((tmp_path / "train").rglob("*.JPEG"))[1]
    bad.write_bytes(BAD_JPEG)
    files = index_imagenet(tmp_path).train
    n = len(files)
    loader = _loader(files, shuffle=False, bs=n)
    with pytest.raises(DataError, match=rf"{bad.stem}.*data\.on_bad_image=skip"):
        _batches(loader, 0)
    loader = _loader(files, shuffle=False, bs=n, on_bad_image="skip")
    with pytest.warns(RuntimeWarning, match=rf"skipping unreadable image .*{bad.stem}"):
        (x, y), = _batches(loader, 0)
    assert x.shape[0] == y.shape[0] == n - 1
    with pytest.raises(ConfigError, match="data.on_bad_image"):
        _loader(files, on_bad_image="ignore")


# ------------------------------------------------------------------------------------------
# choosing the pipeline; other ImageFolder datasets
# ------------------------------------------------------------------------------------------

def test_auto_picks_stream_above_the_memory_limit(tree):
    base = ["data.name=imagenet", f"data.root={tree}", "data.image_size=32"]
    # (18 + 9) images * 3 * 32 * 32 = 82944 bytes
    assert resolve_pipeline(build_config({}, base).data) == "memory"
    limit = 82944 / 2 ** 30
    assert resolve_pipeline(build_config({}, base + [f"data.memory_limit_gib={limit * 0.99}"]).data) == "stream"
    assert resolve_pipeline(build_config({}, base + [f"data.memory_limit_gib={limit * 1.01}"]).data) == "memory"
    assert resolve_pipeline(build_config({}, ["data.name=digits", "data.memory_limit_gib=0"]).data) == "memory"


def test_auto_builds_the_index_once(tree, monkeypatch):
    # deciding 'auto' walks the tree; loading the streamed splits reuses that index
    import spikedistill.data.stream as S
    from spikedistill.data.pipeline import open_pipeline

    calls = []
    real = S.index_from_config
    monkeypatch.setattr(S, "index_from_config", lambda cfg: calls.append(1) or real(cfg))
    cfg = build_config({}, ["data.name=imagenet", f"data.root={tree}", "data.image_size=32",
                            "data.memory_limit_gib=1e-9"])
    pipe = open_pipeline(cfg.data)
    assert pipe.kind == "stream" and len(pipe.splits.train) == 18
    assert len(calls) == 1


def test_stream_refuses_what_cannot_stream(tmp_path):
    from spikedistill.data.pipeline import open_pipeline

    with pytest.raises(ConfigError, match="data.pipeline.*'digits' cannot stream"):
        open_pipeline(build_config({}, ["data.name=digits", "data.pipeline=stream"]).data)
    with pytest.raises(ConfigError, match="data.pipeline.*expected one of memory, stream, auto"):
        build_config({}, ["data.pipeline=disk"])
    archive = tmp_path / "x.tar.gz"
    archive.write_bytes(b"\x1f\x8b" + b"\0" * 100)
    with pytest.raises(DataError, match="unpack a compressed archive first"):
        folder_index(archive)


def test_imagefolder_and_cifar_folders_stream(tmp_path):
    from spikedistill.data.pipeline import open_pipeline

    root = tmp_path / "if"
    make_tree(root)                                   # train/ + val/ class folders: an ImageFolder
    for name in ("imagefolder", "cifar10"):
        cfg = build_config({}, [f"data.name={name}", f"data.root={root}", "data.pipeline=stream"]
                           + (["data.image_size=16"] if name == "imagefolder" else []))
        if name == "cifar10":   # cifar10 declares 10 classes: the 3-class tree is refused
            with pytest.raises(DataError, match="has 3 classes but cifar10 has 10"):
                open_pipeline(cfg.data)
            continue
        s = open_pipeline(cfg.data).splits
        assert cfg.data.pipeline == "stream" and s.input_shape == (3, 16, 16)
        assert s.info["normalization"] == "train-sample" and len(s.mean) == 3
        assert all(0.0 < v < 1.0 for v in s.mean + s.std)


# ------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------

def _cfg(out, tree, name, extra=()):
    return build_config({}, [
        "data.name=imagenet", f"data.root={tree}", "data.pipeline=stream", "data.image_size=32",
        "data.workers=0", "data.augment.autoaugment=false", "data.augment.random_erasing=0",
        "model.name=spiking_resnet20", "model.width_mult=1", "model.T=2", "train.epochs=2",
        "train.batch_size=6", "train.eval_batch_size=8", "train.lr=0.05", "train.threads=1",
        "train.device=cpu", "run.progress=false", "run.tensorboard=false", "run.plots=false",
        f"run.out_dir={out}", f"run.name={name}"] + list(extra))


def test_train_resume_distill_and_evaluate_streamed(tree, tmp_path):
    from spikedistill.engine import checkpoint as ck
    from spikedistill.engine.trainer import run_training

    full = run_training(_cfg(tmp_path, tree, "full"))
    assert full.epochs == 2 and len(full.history) == 2 and 0.0 <= full.last_acc <= 1.0
    saved = (tmp_path / "full" / "config.yaml").read_text()
    assert "pipeline: stream" in saved

    with pytest.raises(SimulatedCrash):
        run_training(_cfg(tmp_path, tree, "crashed"), on_epoch_end=crash_after(1))
    resumed = run_training(None, resume=tmp_path / "crashed")
    assert resumed.start_epoch == 1
    a = ck.load_checkpoint(tmp_path / "full" / "last.pt")
    b = ck.load_checkpoint(tmp_path / "crashed" / "last.pt")
    assert state_dicts_equal(a["model"], b["model"])
    for ra, rb in zip(full.history, resumed.history):
        assert ra["loss_ce"] == rb["loss_ce"] and ra["test_acc"] == rb["test_acc"]

    # distillation from a torchvision ResNet-18 teacher (random-weight file)
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), weights)
    kd = run_training(_cfg(tmp_path, tree, "kd", [
        "train.epochs=1", "distill.method=kd", "teacher.source=torchvision",
        "teacher.arch=resnet18", f"teacher.weights={weights}"]))
    assert "kd" in kd.loss_means and np.isfinite(kd.loss_means["kd"])
    assert (tmp_path / "kd" / "teacher.json").is_file()

    # the evaluate command on the streamed test set equals the trainer's last accuracy
    from spikedistill.data.pipeline import open_pipeline
    from spikedistill.engine.trainer import evaluate

    cfg = _cfg(tmp_path, tree, "x")
    acc = evaluate(full.model, open_pipeline(cfg.data).eval_loader(4, torch.device("cpu")), "cpu",
                   "fp32")
    assert acc == full.last_acc


def test_the_decode_benchmark_runs_and_counts_images(tree, tmp_path):
    import importlib.util
    import json

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "stream_decode.py"
    spec = importlib.util.spec_from_file_location("bench_stream_decode", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "b.json"
    assert mod.main(["--name", "imagenet", "--root", str(tree), "--size", "16", "--batch-size",
                     "4", "--batches", "2", "--workers", "0", "--compare-memory",
                     "--memory-subset", "0", "--step-batches", "1", "--step-workers", "0",
                     "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    stream = [r for r in rows if r["kind"] == "stream"]
    assert stream[0]["images"] == 8 and stream[0]["train_images"] == 18
    assert {r["pipeline"] for r in rows if r["kind"] == "steps"} == {"memory", "stream"}
