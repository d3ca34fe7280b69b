# ModelConfig for auto_complete_config, and the config/type helpers of triton_python_backend_utils.
# Behaviour follows Triton's documented API (the same checks and outcomes); the code is stubforge's own.
# Runs inside the model's env on Python 3.6+.
import numpy as np

TRITON_STRING_TO_NUMPY = {
    "TYPE_BOOL": bool,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}
# The numeric DataType enum of model_config.proto, as triton_to_numpy_type/numpy_to_triton_type use it.
_ENUM = [
    (1, np.bool_),
    (2, np.uint8),
    (3, np.uint16),
    (4, np.uint32),
    (5, np.uint64),
    (6, np.int8),
    (7, np.int16),
    (8, np.int32),
    (9, np.int64),
    (10, np.float16),
    (11, np.float32),
    (12, np.float64),
    (13, np.object_),
]


def triton_string_to_numpy(triton_type_string):
    """'TYPE_FP32' → numpy.float32 (KeyError for an unknown name, as in Triton)."""
    return TRITON_STRING_TO_NUMPY[triton_type_string]


def triton_to_numpy_type(data_type):
    for number, numpy_type in _ENUM:
        if number == data_type:
            return numpy_type
    return None


def numpy_to_triton_type(data_type):
    if data_type == np.bytes_:
        return 13
    for number, numpy_type in _ENUM:
        if data_type == numpy_type:
            return number
    return None


def using_decoupled_model_transaction_policy(model_config):
    policy = model_config.get("model_transaction_policy")
    return bool(policy and policy.get("decoupled"))


def get_input_config_by_name(model_config, name):
    for spec in model_config.get("input", []):
        if spec.get("name") == name:
            return spec
    return None


def get_output_config_by_name(model_config, name):
    for spec in model_config.get("output", []):
        if spec.get("name") == name:
            return spec
    return None


_IO_PROPERTIES = {
    "input": ("name", "data_type", "format", "dims", "reshape", "is_shape_tensor", "optional"),
    "output": ("name", "data_type", "dims", "reshape", "label_filename", "is_shape_tensor"),
}


class ModelConfig:
    """The model's config as auto_complete_config(auto_complete_model_config) receives it."""

    def __init__(self, model_config):
        self._model_config = model_config

    def as_dict(self):
        return self._model_config

    def _name(self):
        return self._model_config.get("name", "")

    def set_max_batch_size(self, max_batch_size):
        current = self._model_config.get("max_batch_size", 0)
        if current > max_batch_size:
            raise ValueError(
                "configuration specified max_batch_size " + str(current) + ", but in auto-complete-config "
                "function for model '" + self._name() + "' specified max_batch_size " + str(max_batch_size)
            )
        self._model_config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self):
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._model_config:
                raise ValueError(
                    "Configuration specified scheduling_choice as '" + other + "', but auto-complete-config "
                    "function for model '" + self._name() + "' tries to set scheduling_choice as "
                    "'dynamic_batching'"
                )
        self._model_config.setdefault("dynamic_batching", {})

    def _add(self, kind, tensor):
        for key in tensor:
            if key not in _IO_PROPERTIES[kind]:
                raise ValueError(
                    "The "
                    + kind
                    + " '"
                    + str(tensor.get("name", ""))
                    + "' in auto-complete-config function for "
                    "model '"
                    + self._name()
                    + "' contains property other than 'name', 'data_type' and 'dims'."
                )
        for key in ("name", "data_type", "dims"):
            if key not in tensor:
                raise ValueError(
                    kind
                    + " '"
                    + str(tensor.get("name", ""))
                    + "' in auto-complete-config function for model '"
                    + self._name()
                    + "' is missing '"
                    + key
                    + "' property."
                )
        existing = self._model_config.setdefault(kind, [])
        for current in existing:
            if current["name"] != tensor["name"]:
                continue
            if current.get("data_type", "TYPE_INVALID") not in ("TYPE_INVALID", tensor["data_type"]):
                raise ValueError(
                    "unable to load model '"
                    + self._name()
                    + "', configuration expects datatype "
                    + current["data_type"]
                    + " for "
                    + kind
                    + " '"
                    + tensor["name"]
                    + "', model provides "
                    "TYPE " + tensor["data_type"]
                )
            if current.get("dims") and list(current["dims"]) != list(tensor["dims"]):
                raise ValueError(
                    "model '"
                    + self._name()
                    + "', tensor '"
                    + tensor["name"]
                    + "': the model expects dims "
                    + str(list(tensor["dims"]))
                    + " but the model configuration specifies dims "
                    + str(list(current["dims"]))
                )
            current["data_type"] = tensor["data_type"]
            current["dims"] = list(tensor["dims"])
            if kind == "input" and "optional" in tensor:
                current["optional"] = tensor["optional"]
            return
        existing.append(dict(tensor))

    def add_input(self, input):
        self._add("input", input)

    def add_output(self, output):
        self._add("output", output)

    def set_model_transaction_policy(self, transaction_policy_dict):
        for key in transaction_policy_dict:
            if key != "decoupled":
                raise ValueError(
                    "model transaction property in auto-complete-config function for model '"
                    + self._name()
                    + "' contains property other than 'decoupled'."
                )
        policy = self._model_config.setdefault("model_transaction_policy", {})
        wanted = transaction_policy_dict.get("decoupled", False)
        if "decoupled" in policy and policy["decoupled"] != wanted and policy != {"decoupled": False}:
            raise ValueError(
                "trying to change decoupled property in auto-complete-config for model '"
                + self._name()
                + "', which is already set to '"
                + str(policy["decoupled"])
                + "'."
            )
        policy["decoupled"] = wanted


def normalize_config(config):
    """What the server fills into a config before the model sees it, again after auto_complete_config: one
    version by default, and a dynamic_batching without preferred_batch_size prefers max_batch_size
    (docs/triton-behaviour.md, "Configs the server completes"). Changes `config` in place and returns it."""
    config.setdefault("version_policy", {"latest": {"num_versions": 1}})
    batching = config.get("dynamic_batching")
    if isinstance(batching, dict) and not batching.get("preferred_batch_size"):
        max_batch_size = int(config.get("max_batch_size", 0) or 0)
        batching["preferred_batch_size"] = [max_batch_size] if max_batch_size > 0 else []
    return config
