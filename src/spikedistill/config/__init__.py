"""Typed run configuration: dataclasses, YAML loading, dotted overrides, validation.

A run is described by one :class:`Config` with the sections ``model``, ``teacher``, ``data``,
``train``, ``distill`` and ``run``. The ``distill`` sub-sections are not written here: every
registered method brings the dataclass of its own section (:class:`DistillConfig`), and
``data.name`` is checked against the registered datasets; both vocabularies are looked up when
a config is built (:mod:`spikedistill.plugins`), so importing this package needs no torch. Configs are loaded from YAML (:func:`load_config`), changed
with dotted overrides such as ``train.epochs=3`` (values parsed as YAML scalars), validated
field by field (:class:`~spikedistill.errors.ConfigError` names the dotted key and the expected
type), and saved fully resolved next to every run (:meth:`Config.to_dict`, :func:`save_config`).

The defaults are the CIFAR recipe of the released CKDSNN code (``method.md``, "Training recipe").

The package, one module per job (``from spikedistill.config import X`` gives every name):

    vocab        the allowed values of keys (the vocabularies) and the size bounds
    checks       the validators (check_choice / check_range / ...) and the recording of
                 their constraints for ``config --keys``
    randaugment  the grammar of timm's RandAugment string
    schema       the sections as dataclasses, with their validate()
    coerce       plain dict <-> dataclasses, with type checking
    yaml_io      reading and writing YAML files, merging mappings
    build        overrides, build_config / load_config, describe_keys
"""

from __future__ import annotations

from spikedistill.config.vocab import (AMP_MODES, BAD_IMAGE_ACTIONS, BATCH_SIZE_MODES,
                                       CKD_NLD_MODE_CHOICES, CKD_NORMALIZE_CHOICES,
                                       CKD_PRESET_CHOICES, CKD_SCALING_CHOICES,
                                       CKD_STUDENT_MAP_CHOICES, CKD_TEACHER_MAP_CHOICES, DECODERS,
                                       LAST_ACTIVATIONS, MAX_IMAGE_SIZE, MAX_T, MODEL_SOURCES,
                                       NEURON_BACKENDS, OPTIMIZERS, PIPELINES, RANDAUGMENT_ALL_OPS,
                                       RANDAUGMENT_INC_OPS, RANDAUGMENT_OPS, SCHEDULERS,
                                       SEW_CONNECTS, SURROGATES, TEACHER_FRAMES, TEACHER_MODES,
                                       TRANSLATE_FILLS)
from spikedistill.config.checks import (check_choice, check_each_choice, check_interval,
                                        check_range, check_registered, record_constraints,
                                        recording)
from spikedistill.config.randaugment import RandAugmentSpec, parse_randaugment
from spikedistill.config.schema import (AugmentConfig, Config, DataConfig, DistillConfig,
                                        ModelConfig, NeuronConfig, RunConfig, TeacherConfig,
                                        TrainConfig, method_sections)
from spikedistill.config.coerce import from_dict
from spikedistill.config.yaml_io import (YAMLAliasRefused, deep_merge, read_yaml, safe_yaml_load,
                                         save_config)
from spikedistill.config.build import (apply_dataset_augment, build_config, describe_keys,
                                       load_config, parse_override, set_dotted)
# private helpers that commands/show_config and the tests use, kept importable from here
from spikedistill.config.coerce import (_is_section as _is_section, _schema as _schema,
                                        _to_plain as _to_plain, _type_name as _type_name)

__all__ = ["AMP_MODES", "AugmentConfig", "BAD_IMAGE_ACTIONS", "BATCH_SIZE_MODES",
           "CKD_NLD_MODE_CHOICES", "CKD_NORMALIZE_CHOICES", "CKD_PRESET_CHOICES",
           "CKD_SCALING_CHOICES", "CKD_STUDENT_MAP_CHOICES", "CKD_TEACHER_MAP_CHOICES", "Config",
           "DECODERS", "DataConfig", "DistillConfig", "LAST_ACTIVATIONS", "MAX_IMAGE_SIZE",
           "MAX_T", "MODEL_SOURCES", "ModelConfig", "NEURON_BACKENDS", "NeuronConfig",
           "OPTIMIZERS", "PIPELINES", "RANDAUGMENT_ALL_OPS", "RANDAUGMENT_INC_OPS",
           "RANDAUGMENT_OPS", "RandAugmentSpec", "RunConfig", "SCHEDULERS", "SEW_CONNECTS",
           "SURROGATES", "TEACHER_FRAMES", "TEACHER_MODES", "TRANSLATE_FILLS", "TeacherConfig",
           "TrainConfig", "YAMLAliasRefused", "apply_dataset_augment", "build_config",
           "check_choice", "check_each_choice", "check_interval", "check_range",
           "check_registered", "deep_merge", "describe_keys", "from_dict", "load_config",
           "method_sections", "parse_override", "parse_randaugment", "read_yaml",
           "record_constraints", "recording", "safe_yaml_load", "save_config", "set_dotted"]
