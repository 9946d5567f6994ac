"""Each pruning method removes what it says, scored as it says, and leaves a loadable checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from orderstudy.checkpoints import models
from orderstudy.checkpoints.inspect import describe
from orderstudy.checkpoints import storage
from orderstudy.operations import prune
from orderstudy.operations.prune import records, structured
from orderstudy.operations.prune import calibration
from orderstudy.operations.prune import PruneParams


def dense(model_dir):
    return storage.load(model_dir, "float32", "cpu")


def test_width_is_a_standard_smaller_checkpoint(states, tiny_model):
    result = states.get("P:width")
    config = models.read_config(result)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["intermediate_size"]) == (2, 1, 64)
    assert config["head_dim"] == 16
    model = AutoModelForCausalLM.from_pretrained(result, dtype=torch.float32)  # no extra code needed
    base = dense(tiny_model)
    # Per layer: q and o lose 2 heads x 16, k and v one group x 16, the MLP 64 channels x 3 matrices.
    removed_per_layer = 2 * 32 * 64 + 2 * 16 * 64 + 3 * 64 * 64
    assert models.count_parameters(base) - models.count_parameters(model) == 3 * removed_per_layer
    assert states.record("P:width")["parameters"] == models.count_parameters(model)
    assert models.dir_size_bytes(result) < models.dir_size_bytes(tiny_model)


def test_whole_groups_and_channel_multiples_are_rounded_half_up_not_to_even():
    """Python's round() removed one of Qwen2.5-1.5B's 2 groups at head_sparsity 0.3 and none at 0.25."""
    assert [structured.kept_groups(2, s) for s in (0.2, 0.25, 0.3, 0.5, 0.75, 0.9)] == [2, 1, 1, 1, 1, 1]
    assert [structured.kept_groups(8, s) for s in (0.0625, 0.1875, 0.3)] == [7, 6, 6]  # 0.5 and 1.5 groups: up, both
    assert structured.kept_groups(5, 0.3) == 3 and structured.kept_groups(3, 0.5) == 1
    # 0.15 x 10 is 1.5000000000000002 in binary and 0.35 x 10 is 3.5: both halves, both up
    assert structured.kept_groups(10, 0.15) == 8 and structured.kept_groups(10, 0.35) == 6
    assert structured.kept_channels(2560, 0.3, 64) == 1792 and structured.kept_channels(224, 0.5, 16) == 112
    assert structured.kept_channels(208, 0.5, 16) == 112  # 6.5 multiples of 16: up to 7 (round() gave 6)


def test_width_records_the_fractions_really_removed(states):
    record = states.record("P:width")  # 2 groups at head_sparsity 0.5, 128 channels at sparsity 0.5
    assert record["heads_removed_fraction"] == 0.5 and record["mlp_channels_removed_fraction"] == 0.5
    record = states.record("P:mlp_channels")  # 128 channels, sparsity 0.25, multiples of 16: 96 kept
    assert record["mlp_channels_removed_fraction"] == 0.25 and record["heads_removed_fraction"] == 0.0


def test_width_keeps_the_highest_magnitude_channels_and_groups(states, tiny_model):
    base = dense(tiny_model)
    pruned = dense(states.get("P:width"))
    record = states.record("P:width")
    for i, (before, after) in enumerate(zip(base.model.layers, pruned.model.layers)):
        channels = torch.topk(structured.channel_importance(before.mlp), 64).indices.sort().values
        assert torch.equal(after.mlp.gate_proj.weight, before.mlp.gate_proj.weight[channels])
        assert torch.equal(after.mlp.down_proj.weight, before.mlp.down_proj.weight[:, channels])
        scores = structured.group_importance(before.self_attn, head_dim=16, heads_per_group=2)
        (group,) = record["kept_groups_by_layer"][i]
        assert group == int(scores.argmax())
        rows = slice(group * 32, (group + 1) * 32)
        assert torch.equal(after.self_attn.q_proj.weight, before.self_attn.q_proj.weight[rows])
        assert torch.equal(after.self_attn.k_proj.weight, before.self_attn.k_proj.weight[group * 16:(group + 1) * 16])
        assert torch.equal(after.self_attn.o_proj.weight, before.self_attn.o_proj.weight[:, rows])


def test_the_record_says_which_channels_each_layer_kept_and_how_they_scored(states, tiny_model):
    base = dense(tiny_model)
    record = states.record("P:width")
    kept = record["kept_channels_by_layer"]
    assert kept["size"] == 128 and len(kept["layers"]) == 3
    all_scores, all_kept = [], []
    for i, layer in enumerate(base.model.layers):
        scores = structured.channel_importance(layer.mlp).detach()
        expected = torch.topk(scores, 64).indices.sort().values
        mask = records.mask_from_text(kept["layers"][i], kept["size"])
        assert np.flatnonzero(mask).tolist() == expected.tolist()
        assert record["group_scores_by_layer"][i] == pytest.approx(
            structured.group_importance(layer.self_attn, head_dim=16, heads_per_group=2).detach().tolist(), rel=1e-5)
        all_scores.append(scores.numpy())
        all_kept.append(mask)
    # The histogram counts every channel once, in the bin its log10 score falls in (numpy agrees
    # but for a score that lands on a bin edge).
    histogram = record["channel_score_histogram"]
    assert sum(histogram["kept"]) == sum(histogram["removed"]) == 3 * 64
    scores, mask = np.log10(np.concatenate(all_scores)), np.concatenate(all_kept)
    edges = histogram["log10_edges"]
    assert edges[0] <= scores.min() and scores.max() <= edges[-1]
    for side, chosen in (("kept", mask), ("removed", ~mask)):
        counted = np.histogram(scores[chosen], bins=edges)[0]
        assert np.abs(counted - np.array(histogram[side])).sum() <= 2


def test_unstructured_records_keep_each_layers_kept_fraction_and_a_score_histogram(states):
    record = states.record("P:magnitude")
    pruned = storage.decoder_linears(dense(states.get("P:magnitude")))
    assert set(record["kept_fraction_by_module"]) == set(pruned)
    for name, module in pruned.items():
        assert record["kept_fraction_by_module"][name] == pytest.approx(float((module.weight != 0).float().mean()), abs=1e-6)
    histogram = record["score_histogram"]
    assert sum(histogram["kept"]) + sum(histogram["removed"]) == sum(m.weight.numel() for m in pruned.values())


def test_activation_scores_are_each_groups_real_contribution(tiny_model, ctx):
    model = dense(tiny_model)
    tokenizer = models.load_tokenizer(tiny_model)
    sequences = calibration.encode(tokenizer, ctx.calibration_examples, 4, 32, 0)
    channels, groups = calibration.channel_and_head_outputs(model, sequences, tokenizer.pad_token_id, 16, 2)
    assert len(channels) == 3 and channels[0].shape == (128,) and groups[0].shape == (2,)

    # Measure group 1 of layer 0 directly: the o_proj output with and without that group's columns.
    o_proj = model.model.layers[0].self_attn.o_proj
    inputs = []
    handle = o_proj.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    batch = next(calibration.batches(sequences, tokenizer.pad_token_id))
    with torch.no_grad():
        model(**batch)
    handle.remove()
    x = inputs[0][batch["attention_mask"].bool()]
    without = x.clone()
    without[:, 32:] = 0
    contribution = (x @ o_proj.weight.T) - (without @ o_proj.weight.T)
    # One batch holds all four sequences, so the score is exactly this norm.
    assert float(groups[0][1]) == pytest.approx(float(contribution.norm()), rel=1e-4)


def test_width_activation_keeps_the_groups_that_contribute_most(states, tiny_model, ctx):
    record = states.record("P:width-activation")
    assert record["importance"] == "activation" and record["calibration"]["examples"] == 6
    model = dense(tiny_model)
    tokenizer = models.load_tokenizer(tiny_model)
    sequences = calibration.encode(tokenizer, ctx.calibration_examples, 6, 48, ctx.seed)
    _, groups = calibration.channel_and_head_outputs(model, sequences, tokenizer.pad_token_id, 16, 2)
    assert record["kept_groups_by_layer"] == [[int(g.argmax())] for g in groups]


def test_depth_removes_the_layer_that_changes_the_hidden_state_least(states, tiny_model, ctx):
    record = states.record("P:depth")
    distances = record["angular_distances"]
    assert len(distances) == 3 and all(0 < d < 1 for d in distances)
    (removed,) = record["layers_removed"]
    assert removed == distances.index(min(distances))

    result = states.get("P:depth")
    assert models.read_config(result)["num_hidden_layers"] == 2
    pruned = AutoModelForCausalLM.from_pretrained(result, dtype=torch.float32)
    # The pruned model computes what the original computes with that layer skipped.
    base = dense(tiny_model)
    skip = base.model.layers[removed].register_forward_hook(
        lambda module, args, kwargs, output: args[0] if args else kwargs["hidden_states"], with_kwargs=True)
    ids = torch.tensor([[1, 504, 3165, 314, 260, 1345]])
    with torch.no_grad():
        expected = base(input_ids=ids).logits
        got = pruned(input_ids=ids).logits
    skip.remove()
    assert torch.allclose(got, expected, atol=1e-5)


def test_depth_distances_match_the_hidden_states(tiny_model, ctx):
    model = dense(tiny_model)
    tokenizer = models.load_tokenizer(tiny_model)
    sequences = calibration.encode(tokenizer, ctx.calibration_examples, 3, 32, 0)
    distances = calibration.layer_angular_distances(model, sequences, tokenizer.pad_token_id)
    batch = next(calibration.batches(sequences, tokenizer.pad_token_id))
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].bool()
    # hidden_states[i] is layer i's input for i < 3 (the last entry is after the final norm).
    for i in range(2):
        cos = torch.nn.functional.cosine_similarity(hidden[i][mask], hidden[i + 1][mask], dim=-1)
        assert distances[i] == pytest.approx(float(torch.arccos(cos.clamp(-1, 1)).mean() / torch.pi), rel=1e-4)


def test_magnitude_zeroes_the_smallest_half_of_every_layer(states, tiny_model):
    base = storage.decoder_linears(dense(tiny_model))
    pruned = storage.decoder_linears(dense(states.get("P:magnitude")))
    for name, module in pruned.items():
        w, original = module.weight, base[name].weight
        zero = w == 0
        assert int(zero.sum()) == w.numel() // 2
        assert float(original[zero].abs().max()) <= float(original[~zero].abs().min())
        assert torch.equal(w[~zero], original[~zero])


def test_wanda_zeroes_half_of_every_row_by_weight_times_input_norm(states, tiny_model, ctx):
    model = dense(tiny_model)
    tokenizer = models.load_tokenizer(tiny_model)
    sequences = calibration.encode(tokenizer, ctx.calibration_examples, 6, 48, ctx.seed)
    norms = calibration.input_norms(model, sequences, tokenizer.pad_token_id)
    base = storage.decoder_linears(model)
    pruned = storage.decoder_linears(dense(states.get("P:wanda")))
    for name, module in pruned.items():
        zero = module.weight == 0
        assert (zero.sum(dim=1) == module.weight.shape[1] // 2).all()
        score = base[name].weight.abs() * norms[name][None, :]
        for row in range(0, zero.shape[0], 17):
            assert float(score[row][zero[row]].max()) <= float(score[row][~zero[row]].min())
    record = states.record("P:wanda")
    assert record["zero_fraction"] == pytest.approx(0.5) and record["parameters"] == record["parameters_before"]
    assert "as large as an unpruned one" in record["storage_note"]


def test_two_of_four_has_two_zeros_in_every_four(states):
    for name, module in storage.decoder_linears(dense(states.get("P:2:4"))).items():
        quads = (module.weight == 0).reshape(module.weight.shape[0], -1, 4).sum(dim=2)
        assert (quads == 2).all(), name
    assert states.record("P:2:4")["score"] == "|W| x input norm (Wanda)"


def test_sparse_storage_holds_the_same_weights_in_fewer_bytes(states):
    dense_dir, sparse_dir = states.get("P:wanda"), states.get("P:wanda-sparse")
    a = dense(dense_dir).state_dict()
    b = dense(sparse_dir).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    layers_dense = describe(dense_dir)["parts"]["layers"]["bytes"]
    layers_sparse = describe(sparse_dir)["parts"]["layers"]["bytes"]
    # Half the values plus one bit a weight: 0.5 + 1/32 of the float32 bytes (plus the norms).
    assert layers_sparse / layers_dense == pytest.approx(0.5 + 1 / 32, abs=0.01)
    assert states.record("P:wanda-sparse")["storage"] == "sparse"


def test_methods_that_read_calibration_data_say_so_when_there_is_none(tiny_model, tmp_path, ctx):
    ctx.calibration_examples = []
    with pytest.raises(ValueError, match="calibration_examples is empty"):
        prune.apply(tiny_model, tmp_path / "out", PruneParams(method="wanda"), ctx)
    # Magnitude scores need no data.
    record = prune.apply(tiny_model, tmp_path / "out", PruneParams(method="magnitude", sparsity=0.25), ctx)
    assert "calibration" not in record and record["zero_fraction"] == pytest.approx(0.25)


@pytest.mark.parametrize("fields,message", [
    ({"method": "width", "storage": "sparse"}, "prune.storage"),
    ({"method": "2:4", "sparsity": 0.3}, "2:4 removes exactly half"),
    ({"method": "wanda", "importance": "activation"}, "prune.importance applies"),
    ({"method": "depth", "head_sparsity": 0.5}, "prune.head_sparsity applies"),
])
def test_inconsistent_prune_params_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        PruneParams(**fields)


def test_which_methods_read_calibration_data():
    assert [m for m in ("width", "mlp_channels", "depth", "magnitude", "wanda", "2:4")
            if PruneParams(method=m).needs_calibration] == ["depth", "wanda"]
    assert PruneParams(method="width", importance="activation").needs_calibration
    assert PruneParams(method="2:4", importance="activation").needs_calibration
