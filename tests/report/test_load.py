"""Result files: the contract with the runner, and clear errors when a file breaks it."""

import json

import pytest

from orderstudy.report.load import ResultFileError, load_items, load_result, load_study


def test_reads_a_finished_study(finished_study):
    study = load_study(finished_study.paths)
    FAILED, NOT_RUN = finished_study.failed, finished_study.not_run
    assert study.benchmarks == ("lawbench", "stem", "mmlu_law")
    assert study.status("base") == "ok"
    assert study.status(FAILED) == "failed"
    assert study.status(NOT_RUN) == "not run"
    assert "OutOfMemoryError at Q>P>F" in study.results[FAILED].error_text()
    assert set(study.items) == set(study.results) - {FAILED}


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda d: d.pop("status"), "status"),
        (lambda d: d.update(status="done"), "status"),
        (lambda d: d["benchmarks"]["stem"].update(score="high"), "benchmarks.stem.score"),
        (lambda d: d["benchmarks"]["stem"].update(score=250.0), "benchmarks.stem.score"),
        (lambda d: d["benchmarks"]["lawbench"]["tasks"]["1-1"].pop("n"), "benchmarks.lawbench.tasks.1-1.n"),
        (lambda d: d.update(size_bytes="5.8G"), "size_bytes"),
        (lambda d: d.update(ordering="P>F"), "ordering"),
        (lambda d: d.update(study="other"), "study"),
        (lambda d: d.update(schema=2), "schema"),
    ],
)
def test_malformed_result_names_file_and_key(finished_study, change, key):
    path = finished_study.paths.result("F>P")
    _rewrite(path, change)
    with pytest.raises(ResultFileError) as info:
        load_study(finished_study.paths)
    message = str(info.value)
    assert str(path) in message and f"key '{key}'" in message


def test_failed_result_needs_its_error(finished_study):
    path = finished_study.paths.result(finished_study.failed)
    _rewrite(path, lambda d: d.update(error=None))
    with pytest.raises(ResultFileError, match="key 'error'"):
        load_result(path)


def test_invalid_json_names_the_line(finished_study):
    path = finished_study.paths.result("F")
    path.write_text('{"schema": 1,')
    with pytest.raises(ResultFileError, match=r"F\.json: not valid JSON \(line 1"):
        load_study(finished_study.paths)


def test_malformed_items_name_file_and_key(finished_study):
    path = finished_study.paths.items / "F.json"
    _rewrite(path, lambda d: d["stem"]["astronomy"].update({"astronomy/000": 2.0}))
    with pytest.raises(ResultFileError, match=r"F\.json: key 'stem\.astronomy\.astronomy/000': expected a score in \[0, 1\]"):
        load_items(path)


def test_missing_items_file_is_an_error(finished_study):
    (finished_study.paths.items / "F.json").unlink()
    with pytest.raises(ResultFileError, match=r"key 'items_file': names .*F\.json, which does not exist"):
        load_study(finished_study.paths)


def test_missing_study_directory(tmp_path):
    from orderstudy.core.paths import StudyPaths

    with pytest.raises(FileNotFoundError, match="no such study directory"):
        load_study(StudyPaths("nothing", tmp_path))
