#!/usr/bin/env python3
"""Builds and checks the device kit: what the GPU machine lacks, packed to travel with the tree.

The GPU machine the device check runs on has Python 3.12 with its own CUDA build of torch and
many packages (scripts/device_packages.txt), and no network. `build` resolves our pins
(requirements.txt) for that Python on Linux x86-64 with pip, keeps what the machine lacks or has in
another version, installs it into a site directory, drops what is never loaded there (TRIMS), and
packs it with the benchmark data and SmolLM2's tokenizer files into .device/kit/ (xz). It stops if
the kit and the working tree together would not fit what is copied to that machine (LIMIT_BYTES).

    python scripts/device_kit.py build               # here (downloads from the package index)
    python scripts/device_kit.py check               # here: the built site against the package list
    python3 scripts/device_kit.py verify SITE        # there: the site against what is installed

`check` and `verify` apply the same rule, with the device's packages taken from the list (`check`)
or from the running interpreter (`verify`): every requirement of every kit distribution, markers
evaluated for that Python, is met by the kit or by the device, and no package is in the kit twice.
`verify` needs only the standard library and `packaging`, which the device has.
"""

from __future__ import annotations

import argparse
import email.parser
import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
DEVICE_PACKAGES = ROOT / "scripts" / "device_packages.txt"
REQUIREMENTS = ROOT / "requirements.txt"
# The working tree and the kit are copied to the GPU machine together, 64 MiB at most; keep a margin.
LIMIT_BYTES = 60 * 2**20
DEVICE_PYTHON = "3.12"
# torch 2.11.0+cu130 there: bitsandbytes loads libbitsandbytes_cuda<torch.version.cuda>.so.
DEVICE_CUDA = "130"
# glibc of the device image (Ubuntu 24.04 has 2.39); 2.35 leaves a margin and every wheel we need fits.
MANYLINUX_MAX = 35

# Our pins that do not go to the device, and why.
NOT_CARRIED = {
    "torch": "the device's own CUDA build (2.11.0+cu130) is the one to test",
    "jupyterlab": "only `make lab` uses it",
    "nbconvert": "only `make report` (HTML export) uses it",
    "gguf": "only `make model` (the GGUF default model) uses it; the smoke study runs the tiny model",
    "pytest": "the tests do not run there",
    "ray": "only `executor: ray` imports it; the smoke study runs the local executor (and its wheel is 70 MB)",
}
# Packages the device has that we carry anyway, and why (beyond the automatic rules in plan_carry).
ALSO_CARRIED = {
    "typing-extensions": "pydantic-core needs >= 4.16.0, the newest release, and the device's version is unknown",
}
# What the kit drops from the installed packages: never loaded by the device check, and the bulk of
# the kit otherwise (sizes unpacked). Each entry: (glob under the site directory, why).
TRIMS = [
    # 43 MB wheel: one CUDA library per CUDA version; the device's torch is cu130, so only
    # libbitsandbytes_cuda130.so is loaded there (and the CPU one where there is no GPU).
    ("bitsandbytes/libbitsandbytes_*.so", "bitsandbytes libraries for other CUDA/ROCm/XPU versions"),
    # 70 MB of lm-eval's own task definitions: our suite indexes only its own YAML
    # (TaskManager(include_defaults=False) in orderstudy.evaluation.engine).
    ("lm_eval/tasks/*/", "lm-eval's built-in tasks (our suite uses include_defaults=False)"),
    # 30 MB: paddle mode, part-of-speech tagging and keyword extraction. LawBench's ROUGE uses
    # jieba.cut in its default mode (dictionary + HMM: dict.txt and finalseg/), which stays.
    ("jieba/lac_small/", "jieba's paddle mode"),
    ("jieba/posseg/", "jieba's part-of-speech tagger"),
    ("jieba/analyse/", "jieba's keyword extraction"),
    # Console scripts (their shebangs name this machine's Python) and stray top-level folders that
    # some wheels carry: rouge-chinese's `bin` (a command-line helper), cn2an's `example` and cn2an's
    # and proces's `build/lib/...` copies of themselves; nothing imports them.
    ("bin/", "console scripts and rouge-chinese's command-line helper"),
    ("build/", "stray build/lib copies inside the cn2an and proces wheels"),
    ("example/", "cn2an's examples"),
]
KEEP_LIBS = {"libbitsandbytes_cpu.so", f"libbitsandbytes_cuda{DEVICE_CUDA}.so"}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
# What the device check reads from the prepared cache (`make model data` makes it).
REQUIRED_INPUTS = ["data/lawbench/sources.json", "data/mmlu/subjects.json", "data/cilin/cilin_ex.txt"] + \
                  [f"models/SmolLM2-135M-Instruct/{f}" for f in TOKENIZER_FILES]
UPPER_BOUNDING = {"<", "<=", "==", "===", "~="}


class KitError(RuntimeError):
    pass


def normalize(name: str) -> str:
    """Return a distribution name in its canonical form: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_package_list(path: Path = DEVICE_PACKAGES) -> dict[str, str | None]:
    """Return ``{name: version or None}`` from a ``name`` / ``name==version`` list (``#`` comments)."""
    packages: dict[str, str | None] = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:==([0-9][A-Za-z0-9.+!]*))?", line)
        if not m:
            raise KitError(f"{path}:{n}: {line!r} is neither `name` nor `name==version`")
        packages[normalize(m.group(1))] = m.group(2)
    return packages


def read_pins(path: Path = REQUIREMENTS) -> dict[str, str]:
    """Return ``{name: version}`` of the ``name==version`` pins in a requirements file."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[normalize(name)] = version
    return pins


def marker_environment(python_version: str) -> dict[str, str]:
    """Return the marker environment of CPython ``python_version`` on Linux x86-64, no extras."""
    return {"python_version": python_version, "python_full_version": python_version + ".0",
            "implementation_name": "cpython", "implementation_version": python_version + ".0",
            "platform_python_implementation": "CPython", "platform_system": "Linux", "sys_platform": "linux",
            "platform_machine": "x86_64", "os_name": "posix", "platform_release": "", "platform_version": "",
            "extra": ""}


def site_distributions(site: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Return ``{name: [(version, requires_dist), ...]}`` of the ``*.dist-info`` in a site directory."""
    dists: dict[str, list[tuple[str, list[str]]]] = {}
    for meta in sorted(site.glob("*.dist-info/METADATA")):
        msg = email.parser.Parser().parsestr(meta.read_text(encoding="utf-8", errors="replace"), headersonly=True)
        dists.setdefault(normalize(msg["Name"]), []).append((msg["Version"], msg.get_all("Requires-Dist") or []))
    return dists


def unmet_requirements(kit: dict[str, list[tuple[str, list[str]]]], device: dict[str, str | None],
                       environment: dict[str, str]) -> list[str]:
    """Return what stops the kit from working on the device (an empty list: nothing).

    ``kit`` is ``site_distributions`` of the kit; ``device`` the device's packages (version None:
    not known). A requirement is met by the kit's distribution if the kit has one, else by the
    device's; against an unknown version it is met unless it bounds the version from above.

    >>> kit = {"a": [("1.0", ["b>=2", "c<3", "d; python_version < '3.0'"])], "b": [("2.1", [])]}
    >>> unmet_requirements(kit, {"c": None}, marker_environment("3.12"))
    ['a 1.0 needs c<3, and the version on the device is not known: carry c']
    >>> unmet_requirements(kit, {"c": "2.5"}, marker_environment("3.12"))
    []
    """
    problems = []
    for name, versions in sorted(kit.items()):
        if len(versions) > 1:
            problems.append(f"{name} is in the kit {len(versions)} times ({', '.join(v for v, _ in versions)}): keep one")
    for name, versions in sorted(kit.items()):
        version, requires = versions[0]
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate(environment):
                continue
            needed = normalize(req.name)
            spec = req.specifier
            where, have = ("kit", kit[needed][0][0]) if needed in kit else ("device", device.get(needed, "absent"))
            if have == "absent":
                problems.append(f"{name} {version} needs {needed}{spec}, which neither the kit nor the device has")
            elif have is None:
                if any(s.operator in UPPER_BOUNDING for s in spec):
                    problems.append(f"{name} {version} needs {needed}{spec}, and the version on the device is not known: "
                                    f"carry {needed}")
            elif not _satisfies(spec, have):
                problems.append(f"{name} {version} needs {needed}{spec}, but the {where} has {needed} {have}")
    return problems


def _satisfies(spec: SpecifierSet, version: str) -> bool:
    try:
        return spec.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


# ---- build (here) ---------------------------------------------------------------------------------

# The Python whose pip builds the kit (`--pip`). pip 23.2 downloads whole wheels to read their
# dependencies (530 MB for torch alone); newer ones read the index's metadata files (26.3: 3 s),
# so an older pip is replaced by one in a small venv (ensure_pip).
PIP_PYTHON = sys.executable
MIN_PIP = (25, 0)


def _pip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([PIP_PYTHON, "-m", "pip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise KitError(f"pip {' '.join(args[:2])} failed:\n{_pip_errors(proc)}")
    return proc


def _pip_errors(proc: subprocess.CompletedProcess) -> str:
    # pip warns about every unreachable find-links location in its configuration: noise.
    lines = [line for line in (proc.stderr + proc.stdout).splitlines()
             if line.strip() and "is ignored: it is neither" not in line]
    return "\n".join(lines[-30:])


def target_options(python_version: str) -> list[str]:
    """Return pip's options that select wheels for CPython ``python_version`` on manylinux x86-64."""
    opts = ["--python-version", python_version, "--implementation", "cp", "--only-binary=:all:"]
    for tag in ["manylinux1", "manylinux2010", "manylinux2014"] + [f"manylinux_2_{n}" for n in range(5, MANYLINUX_MAX + 1)]:
        opts += ["--platform", f"{tag}_x86_64"]
    return opts


def resolve(needs: dict[str, str], constraints: dict[str, str], wheels: Path, python_version: str) -> list[dict]:
    """Return pip's resolution of ``needs`` for the device (``[{name, version, requires}]``).

    Packages published only as source (jieba, sqlitedict, ...) are built into pure-Python wheels
    in ``wheels`` first; one that would build a platform-specific wheel is an error.
    """
    with tempfile.TemporaryDirectory() as tmp:
        reqs, cons, report = Path(tmp) / "needs.txt", Path(tmp) / "constraints.txt", Path(tmp) / "report.json"
        reqs.write_text("".join(f"{n}=={v}\n" for n, v in needs.items()))
        cons.write_text("".join(f"{n}=={v}\n" for n, v in constraints.items()))
        built: set[str] = set()
        for _ in range(20):
            proc = _pip("install", "--dry-run", "--quiet", "--ignore-installed", "--report", str(report),
                        "--target", str(Path(tmp) / "target"), *target_options(python_version),
                        "--find-links", str(wheels), "-r", str(reqs), "-c", str(cons), check=False)
            if proc.returncode == 0:
                break
            m = re.search(r"satisfies the requirement (\S+)", proc.stderr)
            if not m or "from versions: none" not in proc.stderr or m.group(1) in built:
                raise KitError(f"pip could not resolve our pins for Python {python_version} on the device:\n{_pip_errors(proc)}")
            print(f"  {m.group(1)} is published as source only: building a wheel", flush=True)
            build_pure_wheel(m.group(1), wheels)
            built.add(m.group(1))
        else:
            raise KitError("resolving the kit still fails after building 20 source-only packages")
        installs = json.loads(report.read_text())["install"]
    return [{"name": normalize(i["metadata"]["name"]), "version": i["metadata"]["version"],
             "requires": i["metadata"].get("requires_dist", [])} for i in installs]


def build_pure_wheel(requirement: str, wheels: Path) -> Path:
    """Build a source-only package into a ``py3-none-any`` wheel in ``wheels``; return its path."""
    with tempfile.TemporaryDirectory() as tmp:
        _pip("wheel", "--quiet", "--no-deps", "-w", tmp, requirement)
        built = list(Path(tmp).glob("*.whl"))
        if len(built) != 1 or not re.search(r"-py[23.]*3-none-any\.whl$", built[0].name):
            raise KitError(f"{requirement} has no wheel for the device and builds {[b.name for b in built]} here, "
                           "not one pure-Python wheel: find another version or drop the need")
        wheels.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(built[0], wheels / built[0].name))


def plan_carry(resolved: list[dict], pins: dict[str, str], device: dict[str, str | None],
               python_version: str) -> tuple[dict[str, str], dict[str, str]]:
    """Return ``({name: version} to carry, {name: why})`` from pip's resolution.

    Carried: what the device lacks; our pins it has in another or an unknown version; the
    ALSO_CARRIED; and, repeated until nothing changes, any device package of unknown version that
    a carried package bounds from above (the kit's copy is then the one that counts).
    """
    by_name = {d["name"]: d for d in resolved}
    why: dict[str, str] = {}
    for d in resolved:
        n = d["name"]
        if n not in device:
            why[n] = "not on the device"
        elif n in pins and n not in NOT_CARRIED and device[n] != pins[n]:
            why[n] = f"our pin {pins[n]}; the device has {device[n] or 'an unknown version'}"
        elif n in ALSO_CARRIED:
            why[n] = ALSO_CARRIED[n]
    env = marker_environment(python_version)
    while True:
        kit = {n: [(by_name[n]["version"], by_name[n]["requires"])] for n in why}
        added = False
        for problem in unmet_requirements(kit, device, env):
            m = re.search(r"not known: carry (\S+)$", problem)
            if m and m.group(1) in by_name and m.group(1) not in why:
                why[m.group(1)] = f"upper-bounded by a carried package ({problem.split(',')[0]}); device version unknown"
                added = True
        if not added:
            break
    return {n: by_name[n]["version"] for n in sorted(why)}, why


def download(carry: dict[str, str], wheels: Path, python_version: str) -> list[Path]:
    """Return the wheel of each carried package, downloading what ``wheels`` lacks; drop the rest."""
    wheels.mkdir(parents=True, exist_ok=True)
    _pip("download", "--quiet", "--no-deps", *target_options(python_version), "--find-links", str(wheels),
         "-d", str(wheels), *[f"{n}=={v}" for n, v in carry.items()])
    files = {}
    for whl in sorted(wheels.glob("*.whl")):
        name, version = whl.name.split("-")[:2]
        name = normalize(name)
        if carry.get(name) is not None and Version(carry[name]) == Version(version) and name not in files:
            files[name] = whl
        else:  # another version or a package no longer needed: two versions of one stop an install
            whl.unlink()
    missing = sorted(set(carry) - set(files))
    if missing:
        raise KitError(f"no wheel for {', '.join(missing)} after downloading them into {wheels}")
    return [files[n] for n in sorted(files)]


def install_site(wheel_files: list[Path], site: Path, python_version: str) -> None:
    """Install the wheels (no dependencies, no index) into ``site`` as the device will import them."""
    if site.exists():
        shutil.rmtree(site)
    _pip("install", "--quiet", "--no-deps", "--no-index", "--no-compile", "--target", str(site),
         *target_options(python_version), *map(str, wheel_files))


def trim(site: Path) -> list[str]:
    """Delete TRIMS from an installed site directory; return what was removed (relative paths)."""
    removed = []
    for pattern, _why in TRIMS:
        for path in sorted(site.glob(pattern.rstrip("/"))):
            if pattern.endswith("/") and not path.is_dir():
                continue
            if path.name in KEEP_LIBS:
                continue
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(str(path.relative_to(site)))
    return removed


def pack(source: Path, members: list[tuple[Path, str]], archive: Path) -> None:
    """Write ``members`` ((path, name in the archive)) into an xz tar, reproducibly (sorted, no owners, mtime 0)."""
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    tmp = archive.with_name(archive.name + ".tmp")
    archive.parent.mkdir(parents=True, exist_ok=True)
    xz = shutil.which("xz")
    if xz:  # xz's threads: several times faster than Python's lzma on the 180 MB site directory
        with open(tmp, "wb") as out:
            proc = subprocess.Popen([xz, "-T0", "-6", "-c"], stdin=subprocess.PIPE, stdout=out)
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                _add_sorted(tar, members, clean)
            proc.stdin.close()
            if proc.wait() != 0:
                raise KitError(f"xz failed writing {archive}")
    else:
        with tarfile.open(tmp, "w:xz", preset=6, format=tarfile.PAX_FORMAT) as tar:
            _add_sorted(tar, members, clean)
    os.replace(tmp, archive)


def _add_sorted(tar: tarfile.TarFile, members: list[tuple[Path, str]], clean) -> None:
    for path, arcname in members:
        if path.is_dir():
            tar.add(path, arcname, recursive=False, filter=clean)
            for child in sorted(path.rglob("*")):
                if child.is_file() or child.is_dir():
                    tar.add(child, f"{arcname}/{child.relative_to(path).as_posix()}", recursive=False, filter=clean)
        else:
            tar.add(path, arcname, filter=clean)


def check_inputs(cache: Path) -> None:
    """Raise unless ``cache`` holds what the device check reads (prepared data, SmolLM2's tokenizer)."""
    missing = [rel for rel in REQUIRED_INPUTS if not (cache / rel).is_file()]
    if missing:
        raise KitError(f"{cache} lacks {', '.join(missing)}: run `make model data` first")


def tree_bytes() -> int:
    """Return the bytes of the working tree copied to the GPU machine (tracked and untracked-not-ignored)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return sum((ROOT / p).stat().st_size for p in out.decode().split("\0") if p and (ROOT / p).is_file())


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        for f in sorted([p] if p.is_file() else [x for x in p.rglob("*") if x.is_file()]):
            h.update(str(f.relative_to(p.parent)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def ensure_pip(kit_root: Path) -> str:
    """Make PIP_PYTHON a Python whose pip resolves from metadata; return that pip's version.

    An older pip is left alone: a small venv under ``kit_root/tools`` gets the newest pip instead.
    """
    global PIP_PYTHON
    version = _pip("--version").stdout.split()[1]
    if _version_tuple(version) >= MIN_PIP:
        return version
    tools = kit_root / "tools"
    python = tools / "bin" / "python"
    if not python.exists():
        print(f"pip {version} downloads whole wheels to resolve: making {tools} with a newer pip", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
    PIP_PYTHON = str(python)
    if _version_tuple(_pip("--version").stdout.split()[1]) < MIN_PIP:
        _pip("install", "--quiet", "--upgrade", "pip")
    return _pip("--version").stdout.split()[1]


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2])


def build(kit_root: Path, python_version: str, cache: Path, device_packages: Path = DEVICE_PACKAGES,
          limit_bytes: int = LIMIT_BYTES) -> dict:
    """Build the kit under ``kit_root`` (``wheels/``, ``build/site``, ``kit/``); return its manifest."""
    t0 = time.perf_counter()
    ensure_pip(kit_root)
    device = read_package_list(device_packages)
    pins = read_pins()
    needs = {n: v for n, v in pins.items() if n not in NOT_CARRIED}
    # Pin the device's known versions, except those of packages we carry in our own version.
    constraints = {n: v for n, v in device.items() if v is not None and not (n in needs and v != needs[n])}
    wheels, site, kit = kit_root / "wheels", kit_root / "build" / "site", kit_root / "kit"
    print(f"resolving {len(needs)} pins for CPython {python_version} on manylinux x86-64 ...", flush=True)
    resolved = resolve(needs, constraints, wheels, python_version)
    carry, why = plan_carry(resolved, pins, device, python_version)
    print(f"{len(resolved)} distributions needed, {len(carry)} to carry:", flush=True)
    for n, v in carry.items():
        if why[n] != "not on the device":
            print(f"  {n} {v}: {why[n]}")
    wheel_files = download(carry, wheels, python_version)
    install_site(wheel_files, site, python_version)
    removed = trim(site)
    problems = unmet_requirements(site_distributions(site), device, marker_environment(python_version))
    if problems:
        raise KitError("the kit would not work on the device:\n  " + "\n  ".join(problems))

    manifest = {"python_version": python_version, "device_cuda": DEVICE_CUDA, "carried": carry,
                "why": {n: w for n, w in why.items() if w != "not on the device"},
                # The device's packages as pip resolved them (listed versions pinned, others the newest fit).
                "device_assumed": {d["name"]: d["version"] for d in resolved if d["name"] not in carry},
                "trimmed": removed, "tokenizer_files": list(TOKENIZER_FILES)}
    site_key = hashlib.sha256(json.dumps([python_version, DEVICE_CUDA, carry, removed]).encode()).hexdigest()
    # All of data/ (LawBench, MMLU, LawBench 2-1's thesaurus): the study reads it through
    # ORDERSTUDY_CACHE there, as here. The tokenizer makes the tiny model there.
    inputs = [(cache / "data", "data")] + \
             [(cache / "models" / "SmolLM2-135M-Instruct" / f, f"tokenizer/{f}") for f in TOKENIZER_FILES]
    check_inputs(cache)
    inputs_key = _digest([p for p, _ in inputs])
    previous = _read_json(kit / "manifest.json")
    kit.mkdir(parents=True, exist_ok=True)
    if previous.get("site_key") != site_key or not (kit / "site.tar.xz").exists():
        print("packing site.tar.xz (xz -6; a few minutes on 2 cores) ...", flush=True)
        pack(site, [(site / p.name, p.name) for p in sorted(site.iterdir())], kit / "site.tar.xz")
    if previous.get("inputs_key") != inputs_key or not (kit / "inputs.tar.xz").exists():
        print("packing inputs.tar.xz (the prepared data, the tokenizer) ...", flush=True)
        pack(cache, inputs, kit / "inputs.tar.xz")
    manifest.update(site_key=site_key, inputs_key=inputs_key)
    (kit / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    shutil.copy(Path(__file__), kit / "device_kit.py")  # `verify` there, whatever the tree's version

    sizes = {p.name: p.stat().st_size for p in sorted(kit.iterdir()) if p.is_file()}
    tree = tree_bytes()
    total = tree + sum(sizes.values())
    for name, size in sizes.items():
        print(f"  kit/{name:16s} {size / 2**20:7.2f} MiB")
    print(f"  working tree      {tree / 2**20:7.2f} MiB\n  total             {total / 2**20:7.2f} MiB "
          f"(limit {limit_bytes / 2**20:.0f} MiB) — built in {time.perf_counter() - t0:.0f} s")
    if total > limit_bytes:
        raise KitError(f"the kit ({sum(sizes.values()) / 2**20:.1f} MiB) and the working tree ({tree / 2**20:.1f} MiB) "
                       f"come to {total / 2**20:.1f} MiB, over the {limit_bytes / 2**20:.0f} MiB that can be "
                       "copied to the GPU machine with a margin: trim more (TRIMS) or carry less")
    return manifest


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# ---- verify (there) -------------------------------------------------------------------------------

def installed_versions(exclude: Path) -> dict[str, str | None]:
    """Return ``{name: version}`` of the distributions the running interpreter sees outside ``exclude``."""
    from importlib import metadata

    paths = [p for p in sys.path if p and Path(p).resolve() != exclude.resolve()]
    found: dict[str, str | None] = {}
    for dist in metadata.distributions(path=paths):
        name = dist.metadata["Name"]
        if name and normalize(name) not in found:  # the first on the path is the one imported
            found[normalize(name)] = dist.version
    return found


def verify(site: Path, show: list[str]) -> int:
    """Print whether the kit's requirements hold against this interpreter; return 0 if they do."""
    import platform

    kit = site_distributions(site)
    device = installed_versions(site)
    env = marker_environment(".".join(platform.python_version_tuple()[:2]))
    problems = unmet_requirements(kit, device, env)
    shadowed = sorted(n for n in kit if n in device)
    print(f"kit: {len(kit)} distributions in {site}; the kit's copy is used for {len(shadowed)} the machine also has"
          + (f" ({', '.join(f'{n} {device[n]}->{kit[n][0][0]}' for n in shadowed)})" if shadowed else ""))
    for name in show:
        n = normalize(name)
        print(f"  {name:14s} {kit[n][0][0] + ' (kit)' if n in kit else device.get(n) or 'absent'}")
    for p in problems:
        print(f"UNMET: {p}")
    print("requirements: " + ("all met" if not problems else f"{len(problems)} unmet"))
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="device_kit.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build .device/kit here (downloads wheels from the package index)")
    b.add_argument("--dir", type=Path, default=ROOT / ".device", help="where wheels/, build/ and kit/ go")
    b.add_argument("--python-version", default=DEVICE_PYTHON, help="the device's Python (another one: to test the kit here)")
    b.add_argument("--device-packages", type=Path, default=DEVICE_PACKAGES, help="what the machine has (another list: to test the kit here)")
    b.add_argument("--pip", default=sys.executable, metavar="PYTHON",
                   help="the Python whose pip downloads and installs (default: this one; an old pip is replaced in .device/tools)")
    b.add_argument("--cache", type=Path, default=Path(os.environ.get("ORDERSTUDY_CACHE", ROOT / "cache")),
                   help="the prepared cache holding data/ and models/SmolLM2-135M-Instruct")
    c = sub.add_parser("check", help="check a built site directory against scripts/device_packages.txt")
    c.add_argument("--site", type=Path, default=ROOT / ".device" / "build" / "site")
    c.add_argument("--python-version", default=DEVICE_PYTHON)
    c.add_argument("--device-packages", type=Path, default=DEVICE_PACKAGES)
    v = sub.add_parser("verify", help="on the device: check the unpacked site against what is installed")
    v.add_argument("site", type=Path)
    v.add_argument("--show", nargs="*", default=[], help="print these packages' versions as imported")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            global PIP_PYTHON
            PIP_PYTHON = args.pip
            build(args.dir, args.python_version, args.cache, args.device_packages)
        elif args.command == "check":
            problems = unmet_requirements(site_distributions(args.site), read_package_list(args.device_packages),
                                          marker_environment(args.python_version))
            print("\n".join(problems) or f"{args.site}: every requirement is met for Python {args.python_version}")
            return 1 if problems else 0
        else:
            return verify(args.site, args.show)
    except KitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
