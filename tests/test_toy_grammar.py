"""The toy agreement grammar of chapters 4 and 5, and the small GPT trained on it."""

import torch

from attnkit.toy_grammar import NOUNS, VERBS, make_corpus, make_sentences, train_toy_gpt

PLURAL_NOUNS, PLURAL_VERBS = set(NOUNS.values()), set(VERBS.values())


def _agreements(words):
    """(subject noun, its verb) pairs of a sentence: the main clause, and the relative clause if any."""
    nouns = [w for w in words if w in NOUNS or w in PLURAL_NOUNS]
    verbs = [w for w in words if w in VERBS or w in PLURAL_VERBS]
    if "that" in words:  # subject that the inner-noun inner-verb main-verb ...
        return [(nouns[0], verbs[1]), (nouns[1], verbs[0])]
    return [(nouns[0], verbs[0])]


def test_every_verb_agrees_with_its_subject_and_sentences_are_reproducible():
    sentences = make_sentences(500, seed=1)
    assert sentences == make_sentences(500, seed=1) and sentences != make_sentences(500, seed=2)
    with_clause = sum("that" in s for s in sentences)
    assert 150 < with_clause < 350  # both shapes of sentence occur
    for words in sentences:
        assert words[0] == "the" and words[-1] == "." and words[-3] == "the"
        for noun, verb in _agreements(words):
            assert (noun in PLURAL_NOUNS) == (verb in PLURAL_VERBS), " ".join(words)


def test_corpus_windows_start_at_sentence_starts_and_round_trip():
    corpus = make_corpus(n_sentences=200, block_size=16, seed=0)
    assert corpus.data.shape == (sum(len(s) for s in corpus.sentences),)
    the, dot = corpus.stoi["the"], corpus.stoi["."]
    assert (corpus.data[corpus.starts] == the).all()
    assert (corpus.data[corpus.starts[1:] - 1] == dot).all()
    assert int(corpus.starts.max()) + corpus.block_size + 1 < len(corpus.data)
    text = " ".join(corpus.sentences[3])
    assert corpus.decode(corpus.encode(text)) == text


def test_trained_model_makes_the_main_verb_agree_across_a_relative_clause():
    torch.set_num_threads(1)
    corpus = make_corpus(seed=0)
    model, loss = train_toy_gpt(corpus, seed=0)
    assert not model.training and loss < 1.5
    plural_ids = torch.tensor([corpus.stoi[v] for v in sorted(PLURAL_VERBS)])
    probes = [s for s in make_sentences(400, seed=123) if "that" in s][:100]  # unseen draws
    correct = 0
    with torch.no_grad():
        for words in probes:
            main_verb = len(words) - 4  # ... main-verb the object .
            logits = model(corpus.encode(" ".join(words[:main_verb])))[0, -1]  # (V,)
            plural_mass = logits.softmax(-1)[plural_ids].sum().item()
            subject_plural = next(w for w in words if w in NOUNS or w in PLURAL_NOUNS) in PLURAL_NOUNS
            correct += (plural_mass > 0.5) == subject_plural
    assert correct >= 0.9 * len(probes), f"{correct}/{len(probes)} agree"


def test_training_leaves_the_global_random_state_alone_and_is_deterministic():
    corpus = make_corpus(n_sentences=200, block_size=16, seed=0)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    model_a, loss_a = train_toy_gpt(corpus, steps=3, batch_size=4, n_embd=16, n_layer=1, n_head=2, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.rand(5)  # move the global generator on: the next run must not depend on where it is
    model_b, loss_b = train_toy_gpt(corpus, steps=3, batch_size=4, n_embd=16, n_layer=1, n_head=2, seed=7)
    assert loss_a == loss_b
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    _, loss_c = train_toy_gpt(corpus, steps=3, batch_size=4, n_embd=16, n_layer=1, n_head=2, seed=8)
    assert loss_c != loss_a  # the seed is used
