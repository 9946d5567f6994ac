"""The device kit (scripts/device_kit.py): what the GPU machine lacks, checked before it travels.

The first tests build small site directories on the fly and run in seconds. The tests of the kit
itself need `make device-kit` (a few minutes and downloads from the package index); they run where
the kit exists and are skipped elsewhere, CI included: the builder runs the same checks and stops
on any failure, so a kit that exists has passed them once, and these tests catch a kit gone stale
(pins changed, the script changed) before it is carried to the device.
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from orderstudy.core import paths

SCRIPTS = paths.ROOT / "scripts"
KIT_ROOT = paths.ROOT / ".device"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


kit = _load("device_kit")
ENV_312 = kit.marker_environment("3.12")


def _dist(site: Path, name: str, version: str, requires: list[str] = ()) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


# ---- the rule: every requirement met by the kit or the device --------------------------------------

def test_a_requirement_neither_the_kit_nor_the_device_meets_is_reported(tmp_path):
    _dist(tmp_path, "lm_eval", "0.4.13", ["sqlitedict", "numpy"])
    problems = kit.unmet_requirements(kit.site_distributions(tmp_path), {"numpy": "2.5.2"}, ENV_312)
    assert problems == ["lm-eval 0.4.13 needs sqlitedict, which neither the kit nor the device has"]


def test_versions_are_checked_against_the_kit_first_then_the_device(tmp_path):
    _dist(tmp_path, "transformers", "5.24.0", ["tokenizers<0.24,>=0.23.1", "huggingface-hub<3.0,>=1.31", "regex>=2025.10.22"])
    _dist(tmp_path, "huggingface-hub", "1.20.0")
    device = {"tokenizers": "0.22.0", "huggingface-hub": "1.33.0", "regex": None}
    problems = kit.unmet_requirements(kit.site_distributions(tmp_path), device, ENV_312)
    assert problems == [
        "transformers 5.24.0 needs tokenizers<0.24,>=0.23.1, but the device has tokenizers 0.22.0",
        "transformers 5.24.0 needs huggingface-hub<3.0,>=1.31, but the kit has huggingface-hub 1.20.0",
    ]  # regex: a lower bound on a version not known is accepted


def test_an_upper_bound_on_a_device_package_of_unknown_version_must_be_carried(tmp_path):
    _dist(tmp_path, "datasets", "5.2.0", ["fsspec[http]<=2026.9.0,>=2023.1.0", "pandas"])
    problems = kit.unmet_requirements(kit.site_distributions(tmp_path), {"fsspec": None, "pandas": None}, ENV_312)
    assert problems == ["datasets 5.2.0 needs fsspec<=2026.9.0,>=2023.1.0, and the version on the device is not known: carry fsspec"]


def test_markers_are_evaluated_for_the_devices_python(tmp_path):
    _dist(tmp_path, "ipython", "9.18.1", ["exceptiongroup; python_version < '3.11'", "colorama; sys_platform == 'win32'",
                                          "pytest; extra == 'test'", "jedi>=0.18.1"])
    _dist(tmp_path, "jedi", "0.20.1")
    assert kit.unmet_requirements(kit.site_distributions(tmp_path), {}, ENV_312) == []
    assert kit.unmet_requirements(kit.site_distributions(tmp_path), {}, kit.marker_environment("3.10")) == [
        "ipython 9.18.1 needs exceptiongroup, which neither the kit nor the device has"]


def test_two_versions_of_one_package_in_the_kit_are_reported(tmp_path):
    _dist(tmp_path, "typing_extensions", "4.15.0")
    _dist(tmp_path, "typing-extensions", "4.16.0")
    problems = kit.unmet_requirements(kit.site_distributions(tmp_path), {}, ENV_312)
    assert problems == ["typing-extensions is in the kit 2 times (4.15.0, 4.16.0): keep one"]


def test_the_examples_in_the_docstrings_hold():
    result = doctest.testmod(kit)
    assert result.attempted >= 2 and result.failed == 0


# ---- what is carried ----------------------------------------------------------------------------------

def test_the_carried_set_follows_the_rules():
    resolved = [
        {"name": "lm-eval", "version": "0.4.13", "requires": ["numpy", "datasets>=2"]},
        {"name": "datasets", "version": "5.2.0", "requires": ["fsspec<=2026.9.0", "pyarrow>=21"]},
        {"name": "transformers", "version": "5.24.0", "requires": ["numpy>=1.17"]},
        {"name": "accelerate", "version": "1.15.0", "requires": []},
        {"name": "fsspec", "version": "2026.9.0", "requires": []},
        {"name": "pyarrow", "version": "26.0.1", "requires": []},
        {"name": "numpy", "version": "2.5.2", "requires": []},
    ]
    pins = {"lm-eval": "0.4.13", "transformers": "5.24.0", "accelerate": "1.15.0"}
    device = {"transformers": "5.17.0", "accelerate": "1.15.0", "fsspec": None, "pyarrow": None, "numpy": "2.5.2"}
    carry, why = kit.plan_carry(resolved, pins, device, "3.12")
    assert carry == {"datasets": "5.2.0", "fsspec": "2026.9.0", "lm-eval": "0.4.13", "transformers": "5.24.0"}
    assert why["transformers"] == "our pin 5.24.0; the device has 5.17.0"
    assert "upper-bounded" in why["fsspec"]  # pyarrow, bounded from below only, stays the device's


def test_the_device_list_and_the_rules_name_real_packages():
    device = kit.read_package_list()
    assert device["torch"] == "2.11.0" and device["transformers"] == "5.17.0" and "pandas" in device
    pins = kit.read_pins()
    assert set(kit.NOT_CARRIED) <= set(pins), "NOT_CARRIED names a package that requirements.txt no longer pins"
    assert set(kit.ALSO_CARRIED) <= set(device), "ALSO_CARRIED names a package the device does not have"


def test_a_malformed_device_list_line_names_the_file_and_line(tmp_path):
    listing = tmp_path / "packages.txt"
    listing.write_text("# comment\ntorch==2.11.0\nnumpy >= 2\n")
    with pytest.raises(kit.KitError, match=r"packages.txt:3: 'numpy >= 2'"):
        kit.read_package_list(listing)


def test_a_cache_without_the_prepared_inputs_is_refused_naming_what_is_missing(tmp_path):
    for rel in kit.REQUIRED_INPUTS[:2]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    with pytest.raises(kit.KitError, match=r"lacks data/cilin/cilin_ex.txt, models/SmolLM2-135M-Instruct/tokenizer.json"):
        kit.check_inputs(tmp_path)
    kit.check_inputs(paths.CACHE_DIR)  # the prepared cache here has them all


def test_trimming_keeps_what_the_device_loads(tmp_path):
    site = tmp_path / "site"
    keep = ["bitsandbytes/libbitsandbytes_cuda130.so", "bitsandbytes/libbitsandbytes_cpu.so", "bitsandbytes/__init__.py",
            "lm_eval/tasks/__init__.py", "lm_eval/tasks/manager.py", "jieba/dict.txt", "jieba/finalseg/prob_emit.p"]
    drop = ["bitsandbytes/libbitsandbytes_cuda128.so", "bitsandbytes/libbitsandbytes_rocm72.so",
            "lm_eval/tasks/mmlu/default/_default_template_yaml", "jieba/posseg/prob_emit.p", "jieba/analyse/idf.txt",
            "jieba/lac_small/predict.py", "bin/rouge_cmd.py", "build/lib/cn2an/__init__.py"]
    for rel in keep + drop:
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text("x")
    removed = kit.trim(site)
    assert all((site / rel).exists() for rel in keep)
    assert not any((site / rel).exists() for rel in drop)
    assert "lm_eval/tasks/mmlu" in removed and "bitsandbytes/libbitsandbytes_cuda128.so" in removed


def test_packing_is_reproducible_and_unpacks_to_the_same_files(tmp_path):
    src = tmp_path / "src"
    (src / "data" / "mmlu").mkdir(parents=True)
    (src / "data" / "mmlu" / "law.jsonl").write_text('{"q": "法"}\n' * 100, encoding="utf-8")
    (src / "tok.json").write_text("{}")
    members = [(src / "data", "data"), (src / "tok.json", "tokenizer/tok.json")]
    kit.pack(src, members, tmp_path / "a.tar.xz")
    kit.pack(src, members, tmp_path / "b.tar.xz")
    assert (tmp_path / "a.tar.xz").read_bytes() == (tmp_path / "b.tar.xz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.xz") as tar:
        tar.extractall(tmp_path / "out", filter="data")
    assert (tmp_path / "out" / "data" / "mmlu" / "law.jsonl").read_text(encoding="utf-8") == '{"q": "法"}\n' * 100
    assert (tmp_path / "out" / "tokenizer" / "tok.json").read_text() == "{}"


def test_verify_checks_the_site_against_the_running_interpreter(tmp_path):
    _dist(tmp_path / "good", "papermill", "2.7.0", ["packaging", "pyyaml"])  # both installed here
    _dist(tmp_path / "bad", "papermill", "2.7.0", ["packaging>=1000"])
    run = [sys.executable, str(SCRIPTS / "device_kit.py"), "verify"]
    good = subprocess.run(run + [str(tmp_path / "good"), "--show", "packaging"], capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "requirements: all met" in good.stdout and "packaging" in good.stdout
    bad = subprocess.run(run + [str(tmp_path / "bad")], capture_output=True, text=True)
    assert bad.returncode == 1 and "UNMET: papermill 2.7.0 needs packaging>=1000, but the device has packaging" in bad.stdout


# ---- the kit itself (where `make device-kit` has built it) ---------------------------------------------

needs_kit = pytest.mark.skipif(not (KIT_ROOT / "kit" / "manifest.json").is_file(),
                               reason="no .device/kit here: `make device-kit` builds it (downloads; minutes)")


@pytest.fixture(scope="module")
def manifest():
    return json.loads((KIT_ROOT / "kit" / "manifest.json").read_text())


@needs_kit
def test_kit_and_tree_fit_what_is_copied_to_the_gpu_machine(manifest):
    files = [p for p in (KIT_ROOT / "kit").iterdir() if p.is_file()]
    assert {p.name for p in files} == {"site.tar.xz", "inputs.tar.xz", "manifest.json", "device_kit.py"}
    assert sum(p.stat().st_size for p in files) + kit.tree_bytes() <= kit.LIMIT_BYTES


@needs_kit
def test_kit_is_up_to_date_with_the_pins_and_the_script(manifest):
    assert manifest["python_version"] == kit.DEVICE_PYTHON
    device = kit.read_package_list()
    for name, version in kit.read_pins().items():
        if name in kit.NOT_CARRIED:
            continue
        assert manifest["carried"].get(name) == version or device.get(name) == version, \
            f"{name}=={version} is neither in the kit nor on the device: run `make device-kit` again"
    assert (KIT_ROOT / "kit" / "device_kit.py").read_bytes() == (SCRIPTS / "device_kit.py").read_bytes(), \
        "scripts/device_kit.py changed since the kit was built: run `make device-kit` again"


@needs_kit
def test_kit_site_meets_every_requirement_on_the_device(manifest):
    site = KIT_ROOT / "build" / "site"
    dists = kit.site_distributions(site)
    assert {n: v[0][0] for n, v in dists.items()} == manifest["carried"]
    assert kit.unmet_requirements(dists, kit.read_package_list(), ENV_312) == []


def _stub_wheel(directory: Path, name: str, version: str) -> None:
    """Write an empty wheel standing for a package the device already has."""
    stem = f"{name.replace('-', '_')}-{version}"
    with zipfile.ZipFile(directory / f"{stem}-py3-none-any.whl", "w") as z:
        z.writestr(f"{stem}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        z.writestr(f"{stem}.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{stem}.dist-info/RECORD", "")


@needs_kit
def test_pip_resolves_our_pins_from_the_kit_wheels_and_the_devices_packages_alone(manifest, tmp_path):
    """pip's own resolver, offline: the kit's wheels plus one empty stand-in wheel per device package.

    A device package stands in at its listed version, or (version not listed) at the version the
    kit was resolved against; a dependency missing from both, or two versions of one package among
    the kit's wheels, fails the resolution.
    """
    wheels = sorted((KIT_ROOT / "wheels").glob("*.whl"))
    names = [kit.normalize(w.name.split("-")[0]) for w in wheels]
    assert len(names) == len(set(names)), "two versions of one package among the kit's wheels"
    assert set(names) == set(manifest["carried"])
    stubs = tmp_path / "device"
    stubs.mkdir()
    for name, version in manifest["device_assumed"].items():
        if name not in manifest["carried"]:
            _stub_wheel(stubs, name, version)
    needs = [f"{n}=={v}" for n, v in kit.read_pins().items() if n not in kit.NOT_CARRIED]
    report = tmp_path / "report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
                           "--no-index", "--find-links", str(KIT_ROOT / "wheels"), "--find-links", str(stubs),
                           "--report", str(report), "--target", str(tmp_path / "target"),
                           *kit.target_options(kit.DEVICE_PYTHON), *needs], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {kit.normalize(i["metadata"]["name"]): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert {n: v for n, v in chosen.items() if n in manifest["carried"]} == manifest["carried"]
