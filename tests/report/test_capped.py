"""A task whose answers did not fit the generation cap is marked in every table."""

from orderstudy.core.atomic import read_json, write_json
from orderstudy.report import build_report


def test_capped_task_is_marked_in_every_table(finished_study):
    # The runner writes, per task, the budget, whether it was capped and the ceiling it leaves.
    for path in finished_study.paths.results.glob("*.json"):
        result = read_json(path)
        if result["status"] != "ok":
            continue
        result["benchmarks"]["lawbench"]["tasks"]["1-1"].update(max_new_tokens=24, capped=True, ceiling_pct=17.1)
        result["benchmarks"]["lawbench"]["tasks"]["2-1"].update(max_new_tokens=602, capped=False)
        write_json(path, result)
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    assert set(report.main["capped_tasks"]) == {"lawbench:1-1"}
    note = "Capped (generation stopped before the answers' length, evaluation.max_new_tokens): " \
           "LawBench 1-1 at 24 new tokens (ceiling 17.10)."
    for name in ("main.md", "finetune.md", "prune.md", "quantize.md", "order_effects.md"):
        assert note in report.files[name].read_text(encoding="utf-8"), name
    assert "lawbench:1-1" in report.files["main.csv"].read_text(encoding="utf-8")
    zh = build_report(finished_study.params_file, language="zh", figures=False, outputs_dir=finished_study.outputs_dir)
    assert "LawBench 1-1 最多生成 24 个词元（上限 17.10）" in zh.markdown["main"]


def test_no_capped_task_no_note(finished_study):
    report = build_report(finished_study.params_file, figures=False, outputs_dir=finished_study.outputs_dir)
    assert "Capped" not in report.markdown["main"] and set(report.main["capped_tasks"]) == {""}
