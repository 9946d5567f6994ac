"""The README a newcomer reads in minutes, docs that link to what exists, and text about the project only."""

import re
import subprocess

import pytest

from orderstudy.core import paths

README = paths.ROOT / "README.md"
# Text about the circumstances a study was developed in, not about the project: a path outside
# the repository, files that are not in it, the machines of a particular workplace and the tools
# that lend them, the people who build it.
FOREIGN = re.compile(r"\.\./shared|shared/seed|FACTS\.md|KINDS\.md|machine[^.\n]{0,40}\blends\b|shared (with|by) four other"
                     r"|other agents|CI's kind|this workplace|in this session|\bworkplace|\blends?\b|\blent\b"
                     r"|\bcolleagues?\b|device[ _]tool|\bsession's|helper session", re.IGNORECASE)


def _product_files() -> list[str]:
    # Every shipped text file: the package, its docs and params, the scripts (the device kit and
    # check with their package list), the set-up files and the tests; not this file (it names the words).
    out = subprocess.run(["git", "ls-files", "README.md", "docs", "params", "notebooks", "Makefile", "lib", "scripts",
                          "tests", "outputs", "pyproject.toml", "environment.yml", "CITATION.cff", "requirements*.txt"],
                         cwd=paths.ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [f for f in out if (paths.ROOT / f).is_file() and not f.endswith((".json", ".safetensors"))
            and "/lawbench/data/" not in f and f != "tests/test_docs.py"]


def test_the_readme_is_short():
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 20_000
    assert len(text.splitlines()) <= 250


def test_the_readme_gives_both_commands_the_gpu_steps_and_where_results_land():
    text = README.read_text(encoding="utf-8")
    for needed in ("make study", "make test", "2 cores with AVX512-BF16", "git clone https://github.com/open-compass/LawBench data/LawBench",
                   "LAWBENCH=data/LawBench make data", "HF_TOKEN", "convert-finetune", "make device-check",
                   "outputs/<study>/", "make clean-all", "lib/orderstudy/reference/", "conda activate orderstudy"):
        assert needed in text, needed


def test_the_lawbench_clone_is_where_the_gpu_params_look_for_it():
    text = README.read_text(encoding="utf-8")
    clone_dir = re.search(r"git clone https://github.com/open-compass/LawBench (\S+)", text).group(1)
    for name in ("qwen2.5-1.5b-law.yaml", "llama-3.2-1b-law.yaml"):
        params = (paths.PARAMS_DIR / name).read_text()
        assert f"lawbench_data: {clone_dir}/data" in params, name


@pytest.mark.parametrize("doc", ["README.md", *sorted(f"docs/{p.name}" for p in (paths.ROOT / "docs").glob("*.md"))])
def test_every_relative_link_points_at_a_file_in_the_repository(doc):
    path = paths.ROOT / doc
    for target in re.findall(r"\]\(([^)#\s]+)\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(paths.ROOT.resolve()), f"{doc}: {target} is outside the repository"
        assert resolved.exists(), f"{doc}: {target} does not exist"


def test_product_text_speaks_of_the_project_only():
    found = []
    for name in _product_files():
        for n, line in enumerate((paths.ROOT / name).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if FOREIGN.search(line):
                found.append(f"{name}:{n}: {line.strip()[:100]}")
    assert not found, found
