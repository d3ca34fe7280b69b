"""Runner side command: run a model.py as Triton's Python backend would, without a server."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from stubforge import api
from stubforge.cli import cli, handle_errors, json_option, triton_option
from stubforge.errors import StubforgeError


def _backend_config(items: tuple[str, ...]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise StubforgeError(
                f"--backend-config {item!r} is not KEY=VALUE", hint="e.g. shm-growth-byte-size=1048576"
            )
        config[key] = value
    return config


@cli.command("run")
@click.argument("model_dir", type=click.Path(path_type=Path))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=FILE.npy|JSON",
    help="An input tensor: a .npy file, or a JSON value typed by the config (e.g. INPUT0=[1,2,3]).",
)
@click.option("--requests", default=1, show_default=True, help="Send the request this many times.")
@click.option("--python", "python_spec", help="Python to run (default: from the model's stub or env).")
@triton_option("Release whose launcher to imitate.")
@click.option("--backends", type=click.Path(path_type=Path), help="Backend dir (python_3_X backends, envs).")
@click.option(
    "--backend-config",
    "backend_config",
    multiple=True,
    metavar="KEY=VALUE",
    help="Python backend setting, e.g. shm-default-byte-size=4194304.",
)
@click.option(
    "--startup-timeout", default=30.0, show_default=True, help="Seconds for the stub and initialize."
)
@click.option("--execute-timeout", type=float, help="Seconds one execute may take (default: no limit).")
@click.option("--output-dir", type=click.Path(path_type=Path), help="Write each output as NAME.npy here.")
@click.option(
    "--max-env-size",
    metavar="SIZE",
    help="Largest an archive env may expand to, e.g. 20G (default: 50x the archive, at least 1 GB).",
)
@click.option(
    "--disable-auto-complete-config",
    "no_auto_complete",
    is_flag=True,
    help="As tritonserver's flag: auto_complete_config() is not called.",
)
@click.option(
    "--runner-stub",
    type=click.Path(path_type=Path),
    help="The runner's stub to start (one built for the env's architecture: an aarch64 env runs emulated).",
)
@json_option
@handle_errors
def run_cmd(
    model_dir: Path,
    inputs: tuple[str, ...],
    requests: int,
    python_spec: str | None,
    triton: str,
    backends: Path | None,
    backend_config: tuple[str, ...],
    startup_timeout: float,
    execute_timeout: float | None,
    output_dir: Path | None,
    max_env_size: str | None,
    no_auto_complete: bool,
    runner_stub: Path | None,
    as_json: bool,
) -> None:
    """Run MODEL_DIR's model.py as Triton's Python backend would, without a server."""
    result = api.run_model(
        model_dir,
        inputs,
        requests=requests,
        python=python_spec,
        triton=triton,
        backends=backends,
        backend_config=_backend_config(backend_config),
        startup_timeout=startup_timeout,
        execute_timeout=execute_timeout,
        output_dir=output_dir,
        auto_complete=not no_auto_complete,
        max_env_size=max_env_size,
        runner_stub=runner_stub,
        keep_errors=as_json,
    )
    if as_json:
        # What tritonserver's HTTP endpoint answers (raw bytes: BYTES that are not UTF-8 stay raw, as there).
        sys.stdout.buffer.write(result.triton_json() + b"\n")
        sys.stdout.flush()
        if result.error is not None:
            raise click.exceptions.Exit(result.error.exit_code)
        return
    report = result.to_dict()
    for line in report["stub_output"].splitlines():
        click.echo(f"[model output] {line}", err=True)
    for record in report["logs"]:
        click.echo(f"[model {record['level'].lower()}] {record['message']}", err=True)
    click.echo(
        f"{report['model']}: Python {report['python']} numpy {report['numpy']} "
        f"(pid {report['pid']}), loaded in {report['load_s']:.2f}s"
    )
    for name, out in report["outputs"].items():
        where = f"  -> {out['file']}" if out.get("file") else ""
        click.echo(f"  {name} {out['datatype']} {out['shape']}: {out['preview']}{where}")
    times = report["request_s"]
    if times:
        ordered = sorted(times)
        click.echo(
            f"{len(times)} request(s): median {ordered[len(ordered) // 2] * 1000:.2f} ms, "
            f"min {ordered[0] * 1000:.2f} ms"
        )
