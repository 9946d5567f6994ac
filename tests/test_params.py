import pytest

from orderstudy.core import paths
from orderstudy.core.params import ParamsError, load_params

MINIMAL = "study: t\nmodel: {source: cache/models/x}\n"


def _load(tmp_path, text):
    p = tmp_path / "study.yaml"
    p.write_text(text, encoding="utf-8")
    return load_params(p), p


@pytest.mark.parametrize("name", sorted(p.name for p in paths.PARAMS_DIR.glob("*.yaml")))
def test_every_shipped_params_file_is_valid(name):
    params = load_params(paths.PARAMS_DIR / name)
    assert params.study


def test_defaults_run_all_sixteen_orderings(tmp_path):
    params, _ = _load(tmp_path, MINIMAL)
    assert len(params.ordering_list) == 16
    assert params.prune.sparsity == 0.3 and params.quantize.method == "nf4"


@pytest.mark.parametrize("text,key,expected", [
    (MINIMAL + "prune: {sparsty: 0.3}\n", "prune.sparsty", "unknown key"),
    (MINIMAL + "colour: red\n", "colour", "unknown key"),
    (MINIMAL + "prune: {sparsity: 1.5}\n", "prune.sparsity", "less than 1"),
    (MINIMAL + "finetune: {max_steps: many}\n", "finetune.max_steps", "valid integer"),
    (MINIMAL + "quantize: {method: int3}\n", "quantize.method", "'nf4', 'fp4', 'int8' or 'gptq'"),
    (MINIMAL + "orderings: [F>F]\n", "orderings", "repeated"),
    (MINIMAL + "orderings: [F>P, F>P]\n", "orderings", "listed twice"),
    (MINIMAL + "orderings: [FPQ, F-P-Q]\n", "orderings", "listed twice"),
    (MINIMAL + "orderings: [FPX]\n", "orderings", "unknown operation 'X'; write operation letters (F, P, Q) joined by "
                                                  "'>', '-' or '→' (F>P>Q, F-P-Q, F→P→Q) or run together (FPQ), or 'base'"),
    (MINIMAL + "evaluation: {lawbench_tasks: ['9-9']}\n", "evaluation.lawbench_tasks", "unknown LawBench task '9-9'"),
    ("model: {source: x}\n", "study", "required but missing"),
    (MINIMAL + "device: tpu\n", "device", "'cpu', 'cuda' or 'auto'"),
    (MINIMAL + "report: {multiplicity: bonferroni}\n", "report.multiplicity", "'holm', 'bh' or 'none'"),
    (MINIMAL + "executor: dask\n", "executor", "'local' or 'ray'"),
    (MINIMAL + "ray: {gpus: 1}\n", "ray.gpus", "unknown key"),
    (MINIMAL + "ray: {gpus_per_task: 0}\n", "ray.gpus_per_task", "greater than 0"),
    (MINIMAL + "ray: {cpus_per_task: many}\n", "ray.cpus_per_task", "valid number"),
    (MINIMAL + "evaluation: {chat_template: false}\n", "evaluation.chat_template",
     "moved to the top level: write `chat_template: false` without indentation"),
    (MINIMAL + "ray: {address: head-node}\n", "ray.address", "'auto' (the cluster started here with `ray start`), "
                                                            "'ray://host:port' or 'host:port'"),
])
def test_bad_params_name_the_file_the_key_and_what_is_allowed(tmp_path, text, key, expected):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert str(tmp_path / "study.yaml") in message
    assert f"key '{key}'" in message
    assert expected in message


def test_orderings_in_any_accepted_spelling_are_kept_canonical(tmp_path):
    params, _ = _load(tmp_path, MINIMAL + "orderings: [base, FPQ, P-F, Q→F, F > Q]\n")
    assert params.orderings == ("base", "F>P>Q", "P>F", "Q>F", "F>Q")
    assert params.ordering_list == params.orderings


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="expected a mapping"):
        _load(tmp_path, "- a\n- b\n")
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


def test_hash_changes_with_a_parameter_and_not_with_key_order(tmp_path):
    a, _ = _load(tmp_path, MINIMAL + "prune: {sparsity: 0.3}\nseed: 1\n")
    b, _ = _load(tmp_path, "seed: 1\nprune: {sparsity: 0.3}\n" + MINIMAL)
    c, _ = _load(tmp_path, MINIMAL + "prune: {sparsity: 0.4}\nseed: 1\n")
    assert a.hash() == b.hash() != c.hash()
    # The report's multiplicity adjustment decides no result: results computed before stay current.
    d, _ = _load(tmp_path, MINIMAL + "prune: {sparsity: 0.3}\nseed: 1\nreport: {multiplicity: bh}\n")
    assert d.hash() == a.hash() and d.report.multiplicity == "bh"


def test_executor_defaults_to_in_process_and_ray_keys_are_read(tmp_path):
    params, _ = _load(tmp_path, MINIMAL)
    assert params.executor == "local" and params.ray.address is None and params.ray.gpus_per_task == 1
    params, _ = _load(tmp_path, MINIMAL + "executor: ray\nray: {address: auto, gpus_per_task: 0.5, cpus_per_task: 8}\n")
    assert (params.executor, params.ray.address, params.ray.gpus_per_task, params.ray.cpus_per_task) == ("ray", "auto", 0.5, 8)
    for address in ("ray://10.0.0.1:10001", "head-node:6379"):
        assert _load(tmp_path, MINIMAL + f"ray: {{address: '{address}'}}\n")[0].ray.address == address


def test_seeds_a_list_and_an_old_seed_is_a_list_of_one(tmp_path):
    params, _ = _load(tmp_path, MINIMAL)
    assert params.seeds == (0,) and params.sample_seed == 0
    params, _ = _load(tmp_path, MINIMAL + "seeds: [3, 1, 2]\n")
    assert params.seeds == (3, 1, 2) and params.sample_seed == 3  # the first seed draws the evaluation sample
    params, _ = _load(tmp_path, MINIMAL + "seeds: [3, 1]\nevaluation: {sample_seed: 0}\n")
    assert params.sample_seed == 0
    old, _ = _load(tmp_path, MINIMAL + "seed: 5\n")
    assert old.seeds == (5,) and old.sample_seed == 5


@pytest.mark.parametrize("text,key,expected", [
    (MINIMAL + "seed: 1\nseeds: [1, 2]\n", "seed' and 'seeds", "not both"),
    (MINIMAL + "seeds: []\n", "seeds", "at least one seed"),
    (MINIMAL + "seeds: [1, 1]\n", "seeds", "listed twice"),
    (MINIMAL + "seeds: [-1]\n", "seeds.0", "greater than or equal to 0"),
    (MINIMAL + "report: {bootstrap_resamples: 100}\n", "report.bootstrap_resamples", "no longer used"),
])
def test_bad_seeds_name_the_file_and_the_key(tmp_path, text, key, expected):
    with pytest.raises(ParamsError) as err:
        _load(tmp_path, text)
    assert str(tmp_path / "study.yaml") in str(err.value) and key in str(err.value) and expected in str(err.value)


def test_adding_a_seed_leaves_the_hash_and_a_sample_seed_changes_it(tmp_path):
    one, _ = _load(tmp_path, MINIMAL + "seeds: [0]\n")
    three, _ = _load(tmp_path, MINIMAL + "seeds: [0, 1, 2]\n")
    other_sample, _ = _load(tmp_path, MINIMAL + "seeds: [1, 0]\n")
    assert one.hash() == three.hash() != other_sample.hash()


def test_one_chat_template_setting_decides_training_calibration_and_evaluation(tmp_path, outputs_dir, lawbench_dir,
                                                                            tiny_model_dir):
    """evaluation.chat_template could be false while fine-tuning always used the template."""
    from orderstudy.study.study import Study

    text = f"study: t\nmodel: {{source: {tiny_model_dir}}}\n" + ("finetune: {train_items_per_task: 2}\nprune: {importance: activation}\n"
                      "evaluation: {benchmarks: [lawbench], lawbench_tasks: ['2-4'], lawbench_items_per_task: 1}\n")
    with_template, path = _load(tmp_path, text)
    assert with_template.chat_template is True
    plain = Study(path, params=with_template.model_copy(update={"chat_template": False}))
    chat = Study(path, params=with_template)
    assert (chat.suite.chat_template, plain.suite.chat_template) == (True, False)
    assert chat.suite.key != plain.suite.key
    for op, key in (("F", "training_data"), ("P", "calibration_data")):
        assert chat._step_inputs(op)[key] == plain._step_inputs(op)[key]
        assert (chat._step_inputs(op)["chat_template"], plain._step_inputs(op)["chat_template"]) == (True, False)
        assert chat.store.key(op) != plain.store.key(op)
    assert chat.store.key("Q") == plain.store.key("Q")
