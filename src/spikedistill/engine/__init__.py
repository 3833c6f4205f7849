"""Engine: the training loop, checkpoints (atomic, validated), distributed helpers, run records.

    run_training(cfg, *, resume=None, teacher_checkpoint=None, on_epoch_end=None,
                 callbacks=()) -> RunResult
    train_step(distiller, x, y, optimizer, *, scheduler, scaler, device, amp_dtype, ctx)
    evaluate(model, loader, device, amp) -> top-1 accuracy (fraction)
    load_model_from_checkpoint(path, device, **kwarg_overrides) -> (model, meta)
    load_checkpoint(path) -> dict;  save_checkpoint(ckpt, path);  atomic_torch_save(obj, path)
"""

from spikedistill.engine.checkpoint import (BEST_NAME, FORMAT, FORMAT_VERSION, LAST_NAME,
                                            atomic_torch_save, checkpoint_meta, load_checkpoint,
                                            load_model_from_checkpoint, save_checkpoint)
from spikedistill.engine.distributed import DistInfo, init_distributed
from spikedistill.engine.callbacks import Callback
from spikedistill.engine.loop import train_one_epoch, train_step
from spikedistill.engine.trainer import RunResult, config_for_resume, evaluate, run_training

__all__ = ["Callback", "train_one_epoch", "train_step", "BEST_NAME", "FORMAT", "FORMAT_VERSION", "LAST_NAME", "DistInfo", "RunResult",
           "atomic_torch_save", "checkpoint_meta", "config_for_resume", "evaluate",
           "init_distributed", "load_checkpoint", "load_model_from_checkpoint", "run_training",
           "save_checkpoint"]
