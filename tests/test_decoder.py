"""Decoder behaviour a user relies on: causality, PAD masking, cross-attention use, tying,
GPT mode without an encoder, and cached decoding equal to the full pass."""
import pytest
import torch

from decoder import DecoderBlock, KVCache


def src_tgt():
    src = torch.tensor([[5, 6, 7, 8, 3], [9, 10, 3, 0, 0]])
    tgt = torch.tensor([[2, 11, 12, 13, 14], [2, 15, 16, 0, 0]])
    return src, tgt


def test_causality_seq2seq(seq2seq):
    src, tgt = src_tgt()
    logits = seq2seq(src, tgt)
    changed = tgt.clone()
    changed[:, 3:] = torch.tensor([[20, 21], [22, 23]])
    logits2 = seq2seq(src, changed)
    torch.testing.assert_close(logits[:, :3], logits2[:, :3])
    assert not torch.allclose(logits[0, 3:], logits2[0, 3:])


def test_causality_gpt(gpt):
    ids = torch.tensor([[4, 5, 6, 7, 8, 9]])
    changed = ids.clone()
    changed[0, 4:] = torch.tensor([30, 31])
    torch.testing.assert_close(gpt(ids)[:, :4], gpt(changed)[:, :4])


def test_tokens_under_pad_do_not_matter(seq2seq):
    src, tgt = src_tgt()
    src_keep, tgt_keep = src != 0, tgt != 0
    logits = seq2seq(src, tgt, src_keep, tgt_keep)
    scrambled_src, scrambled_tgt = src.clone(), tgt.clone()
    scrambled_src[~src_keep] = torch.tensor([30, 31])  # new ids under the masked positions
    scrambled_tgt[~tgt_keep] = torch.tensor([32, 33])
    logits2 = seq2seq(scrambled_src, scrambled_tgt, src_keep, tgt_keep)
    torch.testing.assert_close(logits2[tgt_keep], logits[tgt_keep])
    # the same ids unmasked do change the output: the mask is what hides them
    logits3 = seq2seq(scrambled_src, scrambled_tgt, scrambled_src != 0, scrambled_tgt != 0)
    assert not torch.allclose(logits3[1, :3], logits[1, :3])


def test_alone_equals_inside_padded_batch(seq2seq):
    src, tgt = src_tgt()
    batch_logits = seq2seq(src, tgt)
    alone = seq2seq(src[1:, :3], tgt[1:, :3])
    torch.testing.assert_close(batch_logits[1:, :3], alone, atol=1e-5, rtol=1e-5)


def test_cross_attention_is_used(seq2seq):
    src, tgt = src_tgt()
    other = torch.tensor([[20, 21, 22, 23, 3], [24, 25, 3, 0, 0]])
    assert not torch.allclose(seq2seq(src, tgt), seq2seq(other, tgt))


def test_gpt_runs_without_encoder_and_has_no_cross_attention(gpt):
    assert gpt(torch.tensor([[4, 5, 6]])).shape == (1, 3, 40)
    assert all(block.cross_attn is None for block in gpt.decoder.blocks)
    assert isinstance(gpt.decoder.blocks[0], DecoderBlock)


def test_tying_is_one_parameter(seq2seq, gpt):
    emb = seq2seq.decoder.embed.token.weight
    assert seq2seq.decoder.lm_head.weight is emb
    assert seq2seq.encoder.embed.token.weight is emb
    assert gpt.decoder.lm_head.weight is gpt.decoder.embed.token.weight
    names = [n for n, _ in seq2seq.named_parameters()]
    assert sum("token.weight" in n or "lm_head" in n for n in names) == 1


def test_untied_encoder_with_separate_vocab():
    from machine_translation.model.transformer import build_model
    from tests.conftest import tiny_config
    model = build_model(tiny_config(src_vocab_size=50, share_embeddings=False))
    assert model.encoder.embed.token.weight is not model.decoder.embed.token.weight
    assert model.encoder.embed.token.weight.shape[0] == 50
    assert model.decoder.lm_head.weight is model.decoder.embed.token.weight


def step_by_step(model, cache, tokens):
    """Feed tokens one at a time through the cache; return the logits of every step."""
    out = []
    for t in range(tokens.size(1)):
        logits, cache = model.decode_step(tokens[:, t : t + 1], cache)
        out.append(logits)
    return torch.cat(out, dim=1), cache


def test_cached_decoding_equals_full_pass(seq2seq):
    src, tgt = src_tgt()
    tgt = tgt.clamp(min=2)  # decoding never feeds PAD
    full = seq2seq(src, tgt)
    cached, cache = step_by_step(seq2seq, seq2seq.start_cache(src), tgt)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert cache.length == tgt.size(1)


def test_cached_gpt_equals_full_pass(gpt):
    ids = torch.tensor([[4, 5, 6, 7, 8, 9, 10]])
    prefix_logits, cache = gpt.decode_step(ids[:, :3], gpt.start_cache())  # prefill, then one at a time
    rest, _ = step_by_step(gpt, cache, ids[:, 3:])
    torch.testing.assert_close(torch.cat([prefix_logits, rest], 1), gpt(ids), atol=1e-5, rtol=1e-5)


def test_cache_reorder_selects_rows(seq2seq):
    src, _ = src_tgt()
    cache = seq2seq.start_cache(src)
    _, cache = seq2seq.decode_step(torch.tensor([[2], [2]]), cache)
    swapped = cache.reorder(torch.tensor([1, 0, 1]), torch.tensor([1, 0, 1]))
    assert isinstance(swapped, KVCache) and swapped.length == 1
    torch.testing.assert_close(swapped.layer(0)[0][0], cache.layer(0)[0][1])
    torch.testing.assert_close(swapped.cross_kv[0][0][2], cache.cross_kv[0][0][1])
    torch.testing.assert_close(swapped.src_padding_mask[2], cache.src_padding_mask[1])


def test_deferred_reorders_compose_and_decode_as_an_eager_copy(seq2seq):
    """`reorder` only records rows; two reorders in a row and the next step's gather-and-append
    must give what copying the rows at once gives."""
    src, _ = src_tgt()
    _, cache = seq2seq.decode_step(torch.tensor([[2], [2]]), seq2seq.start_cache(src))
    _, cache = seq2seq.decode_step(torch.tensor([[5], [6]]), cache)
    twice = cache.reorder(torch.tensor([1, 0, 1, 0])).reorder(torch.tensor([2, 1]))  # rows 1, 0
    eager = KVCache(tuple(cache.layer(i) for i in range(len(cache.self_kv))), cache.cross_kv,
                    cache.src_padding_mask).reorder(torch.tensor([1, 0]))
    assert twice.length == eager.length == 2
    torch.testing.assert_close(twice.layer(0)[0], cache.layer(0)[0].flip(0))
    with torch.inference_mode():  # search's mode: the gather writes straight into the new cache
        a, after = seq2seq.decode_step(torch.tensor([[7], [8]]), twice)
    b, _ = seq2seq.decode_step(torch.tensor([[7], [8]]), eager)
    torch.testing.assert_close(a, b)
    assert after.rows is None and after.layer(0)[0].shape[2] == 3


def test_hypotheses_share_their_sentence_encoder_rows(seq2seq):
    """Beam search's layout: the encoder keys/values once per sentence, K hypotheses per
    sentence attending to them, gives the same steps as a copy of them per hypothesis."""
    src, _ = src_tgt()
    first, cache = seq2seq.decode_step(torch.tensor([[2], [2]]), seq2seq.start_cache(src))  # one row per sentence
    grouped = cache.reorder(torch.tensor([0, 0, 1, 1]))  # 2 sentences x 2 hypotheses
    assert grouped.cross_kv is cache.cross_kv and grouped.src_padding_mask is cache.src_padding_mask  # not copied
    copied = cache.reorder(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))  # one source row per hypothesis
    for tokens in ([[5], [6], [7], [8]], [[9], [9], [4], [5]]):
        step = torch.tensor(tokens)
        (a, grouped), (b, copied) = seq2seq.decode_step(step, grouped), seq2seq.decode_step(step, copied)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # a sentence leaving the batch takes its encoder row with it
    left = grouped.reorder(torch.tensor([2, 3]), torch.tensor([1]))
    torch.testing.assert_close(seq2seq.decode_step(torch.tensor([[4], [4]]), left)[0],
                               seq2seq.decode_step(torch.tensor([[4], [4]]), copied.reorder(
                                   torch.tensor([2, 3]), torch.tensor([2, 3])))[0], atol=1e-5, rtol=1e-5)


VARIANTS = {"post-norm": dict(norm_first=False), "learned positions": dict(positional="learned"),
            "post-norm, learned": dict(norm_first=False, positional="learned")}


@pytest.mark.parametrize("variant", VARIANTS)
def test_post_norm_and_learned_positions_hide_pad_and_match_alone(variant):
    from machine_translation.model.transformer import build_model
    from tests.conftest import tiny_config
    torch.manual_seed(0)
    model = build_model(tiny_config(**VARIANTS[variant])).eval()
    src, tgt = src_tgt()
    logits = model(src, tgt)
    scrambled = src.clone()
    scrambled[src == 0] = 30  # other ids under the source PAD
    torch.testing.assert_close(model(scrambled, tgt, src != 0, tgt != 0)[tgt != 0], logits[tgt != 0])
    torch.testing.assert_close(model(src[1:, :3], tgt[1:, :3]), logits[1:, :3], atol=1e-5, rtol=1e-5)
    cached, _ = step_by_step(model, model.start_cache(src), tgt.clamp(min=2))
    torch.testing.assert_close(cached, model(src, tgt.clamp(min=2)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset", ["tiny", "small", "base"])
def test_cached_decoding_equals_full_pass_for_the_lm_presets(preset):
    """small and base use learned positions: the cache must offset them by the tokens already decoded."""
    from machine_translation.model.transformer import ModelConfig, build_model
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(preset, "lm", vocab_size=40)).eval()
    ids = torch.randint(4, 40, (2, 12))
    prefix_logits, cache = model.decode_step(ids[:, :5], model.start_cache())
    rest, _ = step_by_step(model, cache, ids[:, 5:])
    torch.testing.assert_close(torch.cat([prefix_logits, rest], 1), model(ids), atol=1e-4, rtol=1e-4)
