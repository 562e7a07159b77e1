"""benchmarks/paper_shape.py at its tiny size on the CPU, in this process: every number it reports is
finite and positive, its FROMAGe floor reads exactly the tokens the step fed the LM, micro-batches
sorted by length pad less than one batch per kind of sequence, and MFU is 4 * N_LM * real tokens over
time over the peak. Timings are not compared (a shared CPU decides them)."""
import contextlib
import io
import math

import pytest
import torch
from benchmarks import paper_shape as ps

PEAK_TFLOPS = 1e-3  # any peak: on the CPU the lookup has none, so MFU would be n/a


@pytest.fixture(scope="module")
def tiny(one_thread):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        results = ps.run("tiny", "cpu", (6, None), peak_tflops=PEAK_TFLOPS, repeats=1)
    return results, out.getvalue()


def test_flops_are_forward_and_activation_backward_at_2n_per_token_each():
    assert ps.lm_step_flops(6_658_473_984, 9000) == 4 * 6_658_473_984 * 9000
    assert ps.lm_step_flops(10, 0) == 0


def test_mfu_is_achieved_flops_per_second_over_the_peak():
    assert ps.mfu(989e12, 2.0, 989e12) == pytest.approx(0.5)
    assert ps.mfu(ps.lm_step_flops(6_658_473_984, 9000), 0.6, 989e12) == pytest.approx(0.4039, abs=1e-4)
    assert ps.mfu(1e12, 1.0, None) is None


def test_peak_lookup_knows_only_the_h100_sxm_and_h200():
    assert ps.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert ps.peak_flops("NVIDIA H200") == 989e12
    for unknown in ("NVIDIA H100 PCIe", "NVIDIA H100 NVL", "NVIDIA A100-SXM4-80GB", "CPU", ""):
        assert ps.peak_flops(unknown) is None, unknown


def test_paper_size_builds_opt_6_7b_and_clip_vit_l_14():
    """The paper configs, built on the meta device (no memory): the published parameter counts."""
    from transformers import CLIPModel, OPTForCausalLM

    shape, tokenizer = ps.SIZES["paper"], ps.stand_in_tokenizer()
    with torch.device("meta"):
        lm = OPTForCausalLM._from_config(ps.lm_config(shape, tokenizer), dtype=torch.bfloat16)
        clip = CLIPModel._from_config(ps.clip_config(shape, tokenizer), dtype=torch.bfloat16)
    assert ps.n_params(lm) == 6_658_473_984  # facebook/opt-6.7b
    assert ps.n_params(clip) == 427_616_513  # openai/clip-vit-large-patch14
    assert ps.n_params(clip.vision_model) == 303_179_776
    assert (shape.batch, lm.dtype, clip.config.vision_config.image_size) == (180, torch.bfloat16, 224)


def test_the_floor_reads_the_steps_lm_tokens(tiny):
    shape = ps.SIZES["tiny"]
    for f in tiny[0]["fromage_layouts"]:
        assert f["floor_tokens"] == f["step_tokens"] > 0
        assert f["floor_positions"] == f["step_positions"] >= f["step_tokens"]
    # 16 sequences (a captioning and a retrieval sequence per example) in micro-batches of at most 6
    batched, unbatched = tiny[0]["fromage_layouts"]
    assert batched is tiny[0]["fromage"] and batched["micro_batch"] == shape.micro_batch == 6
    assert batched["lm_calls"] == math.ceil(2 * shape.batch / shape.micro_batch) == 3
    assert unbatched["micro_batch"] is None and unbatched["lm_calls"] == 2  # one per kind of sequence


def test_micro_batches_sorted_by_length_pad_less_on_the_same_tokens(tiny):
    batched, unbatched = tiny[0]["fromage_layouts"]
    assert batched["step_tokens"] == unbatched["step_tokens"]
    assert batched["step_positions"] < unbatched["step_positions"]


def test_mfu_is_counted_on_the_steps_real_tokens(tiny):
    results, _ = tiny
    f = results["fromage"]
    assert results["peak"] == PEAK_TFLOPS * 1e12
    assert f["flops"] == ps.lm_step_flops(f["n_lm"], f["step_tokens"])
    assert f["mfu"] == pytest.approx(f["flops"] / f["step_s"] / results["peak"])
    assert f["mfu_padded"] == pytest.approx(ps.lm_step_flops(f["n_lm"], f["step_positions"]) / f["step_s"]
                                            / results["peak"])
    assert results["goals"] is None  # the goals are the paper size's


def test_every_reported_number_is_finite_and_positive(tiny):
    results, printed = tiny
    f, e, i = results["fromage"], results["esper"], results["illume"]
    numbers = [f[k] for k in ("step_s", "floor_s", "ratio", "flops", "mfu", "floor_mfu", "mfu_padded")]
    numbers += [e[k] for k in ("tokens", "rollout_s", "tokens_per_s", "captions_per_s", "sample_s",
                               "sample_tokens_per_s")]
    numbers += [i[k] for k in ("seconds", "rationales_per_s")]
    assert all(math.isfinite(x) and x > 0 for x in numbers), numbers
    assert e["reward_finite"]
    shape = ps.SIZES["tiny"]
    assert e["captions"] == shape.rollouts and e["tokens"] <= shape.rollouts * ps.ESPER["max_new_tokens"]
    assert i["rationales"] == shape.illume_items * ps.ILLUME["samples"]
    for words in ("step/floor x", "MFU at 4*N_LM*real tokens", "padding", "tokens/s", "rationales/s",
                  "apply at --size paper"):
        assert words in printed, words


def test_micro_batch_must_be_positive_or_none():
    assert [ps.micro_batch_arg(text) for text in ("60", "none", "None")] == [60, None, None]
    for wrong in ("0", "-3", "1.5", "all"):
        with pytest.raises(SystemExit):
            ps.main(["--micro-batch", wrong])
