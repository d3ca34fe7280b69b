"""Rules on the model's own files: config (reported by the resolver), model-file, heavy-import."""

from __future__ import annotations

import ast
from pathlib import Path

from stubforge.server.check.report import ERROR, WARN, ModelCheck

# Frameworks whose import costs seconds: every stub, the auto-complete one too, pays for it before initialize.
HEAVY_MODULES = {"torch", "tensorflow", "transformers", "jax", "onnxruntime", "tensorrt", "cv2", "vllm"}


def model_file(check: ModelCheck, model_dir: Path, path: Path | None) -> None:
    """`path`: the resolver's <version>/<default_model_filename>; None when there is no version directory."""
    if path is None:
        check.add(
            ERROR, "model-file", f"{model_dir} has no version directory", "put model.py into <model>/1/"
        )
    elif not path.is_file():
        check.add(ERROR, "model-file", f"{path} does not exist", "the model's code must be at that path")
    else:
        model_code(check, path)


def model_code(check: ModelCheck, model_file: Path) -> None:
    try:
        tree = ast.parse(model_file.read_text(errors="replace"), str(model_file))
    except SyntaxError as exc:
        check.add(ERROR, "model-file", f"{model_file}:{exc.lineno}: {exc.msg}", "fix the Python syntax error")
        return
    model_class = next(
        (n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TritonPythonModel"), None
    )
    if model_class is None:
        check.add(
            ERROR,
            "model-file",
            f"{model_file} defines no class TritonPythonModel",
            "the Python backend loads the class of that exact name",
        )
    elif not any(
        isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "execute"
        for n in model_class.body
    ):
        check.add(
            ERROR,
            "model-file",
            f"{model_file}: TritonPythonModel has no execute method",
            "define execute(self, requests) returning one InferenceResponse per request",
        )
    heavy = sorted(
        {
            alias.name.split(".")[0]
            for node in tree.body
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
            if alias.name.split(".")[0] in HEAVY_MODULES
        }
    )
    if heavy:
        check.add(
            WARN,
            "heavy-import",
            f"{model_file.name} imports {', '.join(heavy)} at module top level: every stub "
            "(the auto-complete one too) pays for it before initialize",
            "import inside initialize() (or pass --disable-auto-complete-config to tritonserver)",
        )
