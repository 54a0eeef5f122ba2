"""attnkit.char_gpt: the data, the bigram baseline, the training loop, the weights maps and the shipped checkpoint."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnkit import (
    CHAR_GPT_CONFIG,
    CHECKPOINT,
    GPT,
    CharVocab,
    GPTConfig,
    attention_weights,
    bigram_loss,
    char_batch,
    docs_text,
    evaluate_loss,
    load_char_gpt,
    save_char_gpt,
    train_char_gpt,
)


def test_docs_text_and_vocab_round_trip():
    text = docs_text()
    assert len(text) > 400_000 and "The \"with\" statement" in text
    vocab = CharVocab(text)
    sample = text[1000:1300]
    assert vocab.decode(vocab.encode(sample)) == sample
    with pytest.raises(ValueError, match="`text`"):
        CharVocab("abc").encode("abd")
    with pytest.raises(TypeError, match="`chars`"):
        CharVocab(["a", "b"])


def test_bigram_loss_is_the_smoothed_count_model():
    train, val = torch.tensor([0, 1, 0, 1, 0, 2]), torch.tensor([0, 1, 2])
    counts = torch.ones(3, 3)
    for a, b in zip(train[:-1].tolist(), train[1:].tolist(), strict=True):
        counts[a, b] += 1
    p = counts / counts.sum(1, keepdim=True)
    expected = -(p[0, 1].log() + p[1, 2].log()) / 2
    assert bigram_loss(train, val, 3) == pytest.approx(float(expected))
    with pytest.raises(ValueError, match="`val_ids`"):
        bigram_loss(train, torch.ones(2, 2, dtype=torch.long), 3)


def test_batches_are_shifted_windows():
    ids = torch.arange(100)
    x, y = char_batch(ids, 4, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10) and torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="`block_size`"):
        char_batch(ids, 4, 100)


def test_training_lowers_the_loss_and_saving_keeps_the_model(tmp_path):
    ids = torch.tensor([0, 1, 2, 3] * 200)  # a pattern a GPT learns at once
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=2, n_embd=16))
    log = train_char_gpt(model, ids, ids[:200], steps=60, eval_every=20, lr=1e-2)
    assert log.val_loss[-1] < 0.5 < math.log(4) and len(log.steps) == 60 and log.val_steps == [19, 39, 59]
    save_char_gpt(tmp_path / "m.pt", model, CharVocab("abcd"), log, note="x")
    loaded, vocab, log2, info = load_char_gpt(tmp_path / "m.pt")
    assert vocab.chars == "abcd" and info == {"note": "x"} and log2.val_loss == log.val_loss
    x = ids[:8][None]
    torch.testing.assert_close(loaded(x), model(x), atol=2e-2, rtol=1e-2)  # float16 weights
    with pytest.raises(ValueError, match="`steps`"):
        train_char_gpt(model, ids, ids, steps=0)
    with pytest.raises(TypeError, match="`model`"):
        save_char_gpt(tmp_path / "n.pt", "model", CharVocab("abcd"), log)


def test_attention_weights_are_the_models_own():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=8)).eval()
    idx = torch.randint(0, 11, (2, 9))
    maps = attention_weights(model, idx)  # (n_layer, B, H, L, L)
    assert maps.shape == (2, 2, 2, 9, 9)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 2, 9))
    assert maps.triu(diagonal=1).abs().max() == 0  # causal
    block = model.transformer.h[0]  # the weights times v reproduce the layer's attention output
    x = model.transformer.wte(idx) + model.transformer.wpe.weight[:9]
    v = block.attn.c_attn(block.ln_1(x))[..., 16:].view(2, 9, 2, 4).transpose(1, 2)  # (B, H, L, D)
    y = block.attn.c_proj((maps[0] @ v).transpose(1, 2).reshape(2, 9, 8))
    torch.testing.assert_close(y, block.attn(block.ln_1(x)), atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="`idx`"):
        attention_weights(model, torch.zeros(3))


@pytest.mark.skipif(not CHECKPOINT.exists(), reason="run scripts/train_char_gpt.py")
def test_shipped_checkpoint_beats_the_bigram_baseline():
    model, vocab, log, info = load_char_gpt()
    assert {k: getattr(model.config, k) for k in CHAR_GPT_CONFIG} == CHAR_GPT_CONFIG
    assert CHECKPOINT.stat().st_size < 600_000
    ids = vocab.encode(docs_text())
    val_ids = ids[info["split"]:]
    val = evaluate_loss(model, val_ids)
    assert val < info["bigram_val_loss"] - 0.4, (val, info["bigram_val_loss"])
    assert val == pytest.approx(log.val_loss[-1], abs=0.05)  # float16 weights change little
    with torch.no_grad():
        assert F.softmax(model(ids[:64][None])[0, -1], -1).sum().item() == pytest.approx(1.0)
