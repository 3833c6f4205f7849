"""The vocabularies of the config layer: the allowed values of config keys (and the bounds of
keys whose memory grows with them), in one place. The validators (:mod:`.schema`, the method
configs), the code that acts on a key and ``spikedistill config --keys`` all use these
constants."""

from __future__ import annotations


#: upper bounds of keys whose memory grows with them (a typo such as 100000 is one line, not an
#: allocator traceback): model.T timesteps, data.image_size pixels per side
MAX_T = 1024
MAX_IMAGE_SIZE = 4096


# --------------------------------------------------------------------------------------------
# Vocabularies: the allowed values of config keys, in one place. The validators, the code that
# acts on a key and ``spikedistill config --keys`` all use these constants.
# --------------------------------------------------------------------------------------------
SURROGATES = ("triangle", "sigmoid", "atan")            # model.neuron.surrogate
NEURON_BACKENDS = ("torch", "triton", "auto")           # model.neuron.backend
LAST_ACTIVATIONS = ("relu", "lif")                      # model.last_activation
TEACHER_MODES = ("frozen", "released")                  # teacher.mode
TRANSLATE_FILLS = ("wrap", "zero")                      # data.augment.translate_fill
PIPELINES = ("memory", "stream", "auto")                # data.pipeline
DECODERS = ("cpu", "cuda")                              # data.decode
BAD_IMAGE_ACTIONS = ("error", "skip")                   # data.on_bad_image
BATCH_SIZE_MODES = ("per_gpu", "global")                # train.batch_size_is
OPTIMIZERS = ("sgd", "adamw")                           # train.optimizer
SCHEDULERS = ("cosine", "onecycle", "constant")         # train.scheduler
AMP_MODES = ("auto", "bf16", "fp16", "fp32")            # train.amp
# distill.ckd.* (CKDSNN's switches; spikedistill.distill.methods.ckd re-exports them)
CKD_NORMALIZE_CHOICES = ("batch_minmax", "sample_minmax", "none")   # distill.ckd.samd.normalize
CKD_SCALING_CHOICES = ("softmax", "zscore", "l2", "none")           # distill.ckd.samd.scaling
CKD_TEACHER_MAP_CHOICES = ("cam", "gradcam_label", "gradcam_pred")  # distill.ckd.samd.teacher_map
CKD_STUDENT_MAP_CHOICES = ("spike_sum", "cam")                      # distill.ckd.samd.student_map
CKD_NLD_MODE_CHOICES = ("released", "paper", "fixed", "none")       # distill.ckd.nld.mode
CKD_PRESET_CHOICES = ("released", "paper")                          # distill.ckd.preset


MODEL_SOURCES = ("spikedistill", "spikingjelly", "torchvision", "timm", "python")  # model/teacher.source
TEACHER_FRAMES = ("mean", "per_step", "stack")                                   # teacher.frames
SEW_CONNECTS = ("ADD", "IAND", "AND")   # spike-element-wise functions g(A, S) of SEW-ResNets


#: timm's RandAugment ops (``timm/data/auto_augment.py``: ``_RAND_TRANSFORMS`` and, for ``inc1``,
#: ``_RAND_INCREASING_TRANSFORMS``), in timm's order
RANDAUGMENT_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize",
                   "SolarizeAdd", "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY",
                   "TranslateXRel", "TranslateYRel")
RANDAUGMENT_INC_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing",
                       "SolarizeIncreasing", "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing",
                       "BrightnessIncreasing", "SharpnessIncreasing", "ShearX", "ShearY",
                       "TranslateXRel", "TranslateYRel")
RANDAUGMENT_ALL_OPS = tuple(dict.fromkeys(RANDAUGMENT_OPS + RANDAUGMENT_INC_OPS))
