# Written by stubforge: the model.py of a python_3_X backend directory.
#
# Triton tells the stub of a Python-based backend (any backend directory other than backends/python) to load
# THIS file instead of the model's own model.py. This dispatcher loads the model's file and forwards every
# call to it, so models keep `backend: "python_3_X"` and their own code.
#
# Not forwarded: the static TritonPythonModel.auto_complete_config of the model (Triton calls it on this
# class before initialize, when the model's file is not known yet) - give such models a complete config.pbtxt
# or start the server with --disable-auto-complete-config.

import hashlib
import importlib.util
import json
import os
import sys

_MODEL_CLASS = "TritonPythonModel"


def _model_file(args):
    config = json.loads(args["model_config"])
    filename = config.get("default_model_filename") or "model.py"
    return os.path.join(args["model_repository"], str(args["model_version"]), filename)


def _load(path):
    if not os.path.isfile(path):
        raise RuntimeError(
            f"stubforge dispatcher: the model file {path} does not exist; a model served by a python_3_X "
            "backend keeps its code in <model>/<version>/model.py (or default_model_filename)"
        )
    # The stock stub imports "<version>.model" after appending the version dir, the model dir and the
    # backend dir to sys.path; do the same so the model's own relative imports keep working.
    version_dir = os.path.dirname(path)
    for directory in (version_dir, os.path.dirname(version_dir)):
        if directory not in sys.path:
            sys.path.append(directory)
    # A name unique per file: two models whose files are both model.py must not share a module.
    name = "stubforge_model_" + hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"stubforge dispatcher: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    if not hasattr(module, _MODEL_CLASS):
        raise RuntimeError(
            f"stubforge dispatcher: {path} defines no class {_MODEL_CLASS}, which Triton's Python backend requires"
        )
    return getattr(module, _MODEL_CLASS)


class TritonPythonModel:
    """Forwards initialize/execute/finalize (and any other method) to the model's own TritonPythonModel."""

    def initialize(self, args):
        model_class = _load(_model_file(args))
        self._model = model_class()
        if hasattr(self._model, "initialize"):
            return self._model.initialize(args)
        return None

    def execute(self, requests):
        return self._model.execute(requests)

    def __getattr__(self, name):
        # Only reached for attributes this class lacks (finalize, is_ready hooks, user methods). Before
        # initialize there is no model yet: behave as if the attribute did not exist.
        model = self.__dict__.get("_model")
        if model is None:
            raise AttributeError(name)
        return getattr(model, name)
