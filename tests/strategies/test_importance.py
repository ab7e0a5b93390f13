"""The fast exact Fisher against a per-sample loop (float64, so equality is to ~1e-12)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from forgetbench.benchmark.data.models import MultiHeadNet, mlp_trunk
from forgetbench.strategies import squares
from forgetbench.strategies.importance import exact_fisher_diagonal, per_sample_fisher_loop


def _assert_equal(fast, slow, tol=1e-6):
    assert fast.keys() == slow.keys()
    for name in slow:
        scale = float(slow[name].abs().max()) + 1e-30
        assert float((fast[name] - slow[name]).abs().max()) <= tol * scale, name
        assert float(slow[name].abs().max()) > 0, f"{name}: reference Fisher is all zeros"


class ConvNet(nn.Module):
    """Conv2d (padding, stride) -> Conv1d (dilation) -> Linear on 3-D input -> LayerNorm -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv2d = nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2)
        self.conv1d = nn.Conv1d(3, 4, kernel_size=2, dilation=2)
        self.seq_linear = nn.Linear(5, 3)  # applied per position: (N, 4, 5) -> (N, 4, 3)
        self.norm = nn.LayerNorm(12)  # no fast rule: vmap fallback
        self.out = nn.Linear(12, 5)

    def forward(self, x):
        h = torch.tanh(self.conv2d(x)).flatten(2)  # (N, 3, 9)
        h = torch.tanh(self.conv1d(h))  # (N, 4, 7)
        h = torch.tanh(self.seq_linear(h[..., :5]))  # (N, 4, 3)
        return self.out(self.norm(h.flatten(1)))


def test_mlp_matches_per_sample_loop():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).double()
    x, y = torch.randn(70, 10, dtype=torch.float64), torch.randint(0, 4, (70,))
    _assert_equal(exact_fisher_diagonal(model, x, y, batch_size=32), per_sample_fisher_loop(model, x, y))


def test_conv_positions_and_vmap_fallback_match_loop():
    torch.manual_seed(1)
    model = ConvNet().double()
    x, y = torch.randn(40, 2, 6, 6, dtype=torch.float64), torch.randint(0, 5, (40,))
    fast = exact_fisher_diagonal(model, x, y, batch_size=16)
    _assert_equal(fast, per_sample_fisher_loop(model, x, y))
    assert {"norm.weight", "norm.bias"} <= fast.keys()  # the fallback path really ran


@pytest.mark.parametrize("chunk_floats", [2**21, 1])  # whole batch at once; one sample at a time
def test_resnet_batch_norm_fast_path_matches_loop(monkeypatch, chunk_floats):
    """The reduced ResNet-18 (conv + BatchNorm, strided shortcuts): every parameter on the fast
    path (the vmap fallback would be an order of magnitude slower), equal to the per-sample loop
    with non-trivial running statistics, scales and shifts."""
    from forgetbench.benchmark.data.models import make_trunk
    from forgetbench.strategies import importance

    torch.manual_seed(3)
    trunk, features = make_trunk("resnet18", (1, 12, 12), [4])
    model = MultiHeadNet(trunk, features, [3, 2]).double()
    with torch.no_grad():  # batch statistics away from (0, 1), affine away from (1, 0)
        model.train()
        model.forward_single_task(torch.randn(64, 1, 12, 12, dtype=torch.float64) * 2 + 1, 0)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    monkeypatch.setattr(importance, "_vmap_squared_grads", lambda *a, **k: pytest.fail("vmap fallback used"))
    monkeypatch.setattr(squares, "_PER_SAMPLE_CHUNK_FLOATS", chunk_floats)
    x, y = torch.randn(20, 1, 12, 12, dtype=torch.float64), torch.randint(0, 3, (20,))
    fast = exact_fisher_diagonal(model, x, y, task_label=0, batch_size=8)
    assert any(".bn" in name or "norm" in name or "shortcut.1" in name for name in fast)
    _assert_equal(fast, per_sample_fisher_loop(model, x, y, task_label=0))


@pytest.mark.parametrize("chunk_floats", [2**21, 1])
def test_layer_reused_twice_in_one_forward(monkeypatch, chunk_floats):
    monkeypatch.setattr(squares, "_PER_SAMPLE_CHUNK_FLOATS", chunk_floats)  # calls summed per chunk

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.shared = nn.Linear(6, 6)
            self.out = nn.Linear(6, 3)

        def forward(self, x):
            return self.out(torch.tanh(self.shared(torch.tanh(self.shared(x)))))

    torch.manual_seed(2)
    model = Twice().double()
    x, y = torch.randn(30, 6, dtype=torch.float64), torch.randint(0, 3, (30,))
    _assert_equal(exact_fisher_diagonal(model, x, y), per_sample_fisher_loop(model, x, y))


def test_multi_head_returns_only_the_selected_models_parameters():
    torch.manual_seed(3)
    trunk, features = mlp_trunk((1, 8), [12])
    model = MultiHeadNet(trunk, features, [2, 3]).double()
    x, y = torch.randn(25, 1, 8, dtype=torch.float64), torch.randint(0, 3, (25,))
    fast = exact_fisher_diagonal(model, x, y, task_label=1, batch_size=10)
    assert set(fast) == model.used_parameter_names(1)
    _assert_equal(fast, per_sample_fisher_loop(model, x, y, task_label=1))


def test_float32_agrees_to_1e_6():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 10))
    x, y = torch.randn(200, 20), torch.randint(0, 10, (200,))
    _assert_equal(exact_fisher_diagonal(model, x, y), per_sample_fisher_loop(model, x, y), tol=1e-5)


def test_true_fisher_uses_labels_sampled_from_the_model():
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(50, 5, dtype=torch.float64), torch.randint(0, 3, (50,))
    true = exact_fisher_diagonal(model, x, y, estimator="true", generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        probs = torch.softmax(model(x).float(), dim=1)
    sampled = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(7)).squeeze(1)
    _assert_equal(true, per_sample_fisher_loop(model, x, sampled))
    assert not torch.equal(sampled, y)


def test_predicted_fisher_is_van_de_ven_tolias_batch_one_argmax_loop():
    """``predicted``: their code's estimator, written out as they do (batch 1, nll of log_softmax at the
    argmax label, squared gradients summed); labels the model gets wrong change nothing."""
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    reference = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(x)):
        model.zero_grad()
        output = model(x[i : i + 1])
        nn.functional.nll_loss(nn.functional.log_softmax(output, dim=1), output.max(1)[1]).backward()
        for n, p in model.named_parameters():
            reference[n] += p.grad.detach() ** 2
    reference = {n: f / len(x) for n, f in reference.items()}
    _assert_equal(exact_fisher_diagonal(model, x, y, estimator="predicted", batch_size=16), reference)
    _assert_equal(exact_fisher_diagonal(model, x, torch.zeros_like(y), estimator="predicted"), reference)
    empirical = exact_fisher_diagonal(model, x, y)
    assert not torch.allclose(empirical["2.weight"], reference["2.weight"])  # observed labels differ


def test_pass_leaves_model_mode_and_grads_alone():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model.train()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    x, y = torch.randn(9, 4), torch.randint(0, 2, (9,))
    rng_before = torch.get_rng_state()
    exact_fisher_diagonal(model, x, y)
    assert model.training
    assert all(torch.equal(p.grad, torch.ones_like(p)) for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng_before)


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_batching_does_not_change_the_result(batch_size):
    torch.manual_seed(6)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).double()
    x, y = torch.randn(20, 3, dtype=torch.float64), torch.randint(0, 2, (20,))
    _assert_equal(exact_fisher_diagonal(model, x, y, batch_size=batch_size), per_sample_fisher_loop(model, x, y))


def test_layer_not_downstream_of_the_input_keeps_its_fisher():
    """A learned token through a Linear, added to the input's features: its layer is not between
    the input and the loss, yet the model uses it, so its Fisher must be there and exact."""

    class Token(nn.Module):
        def __init__(self):
            super().__init__()
            self.token = nn.Linear(1, 4)
            self.body = nn.Linear(6, 4)
            self.out = nn.Linear(4, 3)

        def forward(self, x):
            learned = self.token(torch.ones(x.shape[0], 1, dtype=x.dtype))  # one row per sample
            return self.out(torch.tanh(self.body(x) + learned))

    torch.manual_seed(4)
    model = Token().double()
    x, y = torch.randn(25, 6, dtype=torch.float64), torch.randint(0, 3, (25,))
    fast = exact_fisher_diagonal(model, x, y, batch_size=10)
    assert {"token.weight", "token.bias"} <= fast.keys()
    _assert_equal(fast, per_sample_fisher_loop(model, x, y))


class TokenNet(nn.Module):
    """Embedding (padding row 0) plus position embeddings looked up once for the batch (shape (1, S), as Hugging
    Face's BERT does) -> Linear over positions -> LayerNorm -> mean over real tokens -> Linear."""

    def __init__(self, broadcast_positions: bool = False):
        super().__init__()
        self.broadcast_positions = broadcast_positions
        self.embed = nn.Embedding(11, 6, padding_idx=0)
        self.position = nn.Embedding(7, 6)
        self.position_mix = nn.Linear(6, 6)  # applied to the (1, S, 6) positions only: no per-sample input either
        self.mix = nn.Linear(6, 6)
        self.norm = nn.LayerNorm(6)
        self.out = nn.Linear(6, 3)

    def forward(self, tokens):
        h = self.embed(tokens)
        if self.broadcast_positions:
            positions = torch.arange(tokens.shape[1]).unsqueeze(0)  # (1, S): one lookup the batch shares
            h = h + self.position_mix(self.position(positions))
        h = self.norm(torch.tanh(self.mix(h)))
        real = (tokens != 0).unsqueeze(-1).to(h.dtype)
        return self.out((h * real).sum(1) / real.sum(1).clamp_min(1))


def _token_data(seed: int):
    torch.manual_seed(seed)
    tokens = torch.randint(1, 5, (30, 7))  # few distinct tokens: every sample repeats some
    tokens[:, 5:] = 0  # padding
    return tokens, torch.randint(0, 3, (30,))


def test_embedding_rule_sums_repeated_tokens_per_sample_and_skips_padding():
    from forgetbench.strategies.importance import _split_parameters

    tokens, y = _token_data(3)
    model = TokenNet().double()
    trainable = {n for n, p in model.named_parameters()} - {
        "position.weight",
        "position_mix.weight",
        "position_mix.bias",
    }
    for name in ("position.weight", "position_mix.weight", "position_mix.bias"):
        model.get_parameter(name).requires_grad_(False)
    fast, fallback = _split_parameters(model, trainable)
    assert fallback == [] and "embed." in fast
    result = exact_fisher_diagonal(model, tokens, y, batch_size=8)
    _assert_equal(result, per_sample_fisher_loop(model, tokens, y))
    assert float(result["embed.weight"][0].abs().max()) == 0.0  # the padding row gets no gradient
    assert float(result["embed.weight"][6:].abs().max()) == 0.0  # tokens never seen: no importance


def _no_fallback(monkeypatch):
    from forgetbench.strategies import importance

    def fail(*args, **kwargs):
        pytest.fail("a parameter took the per-sample fallback")

    monkeypatch.setattr(importance, "_vmap_squared_grads", fail)
    monkeypatch.setattr(importance, "_looped_squared_grads", fail)


def test_layers_called_on_a_lookup_the_batch_shares_get_per_sample_gradients_without_the_fallback(monkeypatch):
    # position embeddings of shape (1, S), broadcast over the batch: the gradient autograd hands their output is
    # already summed over the samples, and squaring that sum is wrong (this test fails so); the pass expands the
    # shared output to the batch, so each sample's gradient reaches the rule, and no parameter takes the fallback
    _no_fallback(monkeypatch)
    tokens, y = _token_data(5)
    model = TokenNet(broadcast_positions=True).double()
    result = exact_fisher_diagonal(model, tokens, y, batch_size=8)
    _assert_equal(result, per_sample_fisher_loop(model, tokens, y))
    assert {"position.weight", "position_mix.weight", "embed.weight"} <= result.keys()


class InPlaceTokenNet(TokenNet):
    """TokenNet whose forward scales the shared position lookup in place: an expanded view cannot take the write."""

    def __init__(self, in_place: bool):
        super().__init__()
        self.in_place = in_place

    def forward(self, tokens):
        positions = self.position(torch.arange(tokens.shape[1]).unsqueeze(0))
        if self.in_place:
            positions.mul_(0.5)
        else:
            positions = positions * 0.5
        h = self.norm(torch.tanh(self.mix(self.embed(tokens) + positions)))
        return self.out(h.mean(1))


def test_a_model_writing_into_the_shared_lookup_is_passed_again_without_expanding(monkeypatch):
    from forgetbench.strategies import importance

    tokens, y = _token_data(8)
    model = InPlaceTokenNet(in_place=True).double()
    fallback = []
    vmapped = importance._vmap_squared_grads
    monkeypatch.setattr(importance, "_vmap_squared_grads", lambda *a, **k: fallback.append(a[-1]) or vmapped(*a, **k))
    _assert_equal(exact_fisher_diagonal(model, tokens, y, batch_size=8), per_sample_fisher_loop(model, tokens, y))
    assert fallback and all(names == ["position.weight"] for names in fallback)  # retried: the lookup's fallback
    reference = InPlaceTokenNet(in_place=False).double()
    reference.load_state_dict(model.state_dict())
    _assert_equal(exact_fisher_diagonal(reference, tokens, y, batch_size=8), per_sample_fisher_loop(model, tokens, y))


def test_a_layer_called_on_rows_that_are_neither_the_batch_nor_shared_takes_the_fallback(monkeypatch):
    from forgetbench.strategies import importance

    class Prototypes(nn.Module):  # a Linear over 4 learned prototypes, compared with every sample
        def __init__(self):
            super().__init__()
            self.prototypes = nn.Parameter(torch.randn(4, 5))
            self.project = nn.Linear(5, 5, bias=False)  # a bias here has gradient 0 (softmax sums out)
            self.encode = nn.Linear(6, 5)

        def forward(self, x):
            return torch.tanh(self.encode(x)) @ self.project(self.prototypes).T  # (N, 4) logits

    torch.manual_seed(9)
    model = Prototypes().double()
    x, y = torch.randn(15, 6, dtype=torch.float64), torch.randint(0, 4, (15,))  # chunks of 6, 6, 3: never 4 rows
    fallback = []
    vmapped = importance._vmap_squared_grads
    monkeypatch.setattr(importance, "_vmap_squared_grads", lambda *a, **k: fallback.append(a[-1]) or vmapped(*a, **k))
    _assert_equal(exact_fisher_diagonal(model, x, y, batch_size=6), per_sample_fisher_loop(model, x, y))
    assert fallback and all("project.weight" in names and "encode.weight" not in names for names in fallback)


def test_a_small_bert_with_every_parameter_trainable_matches_the_loop(monkeypatch):
    transformers = pytest.importorskip("transformers", reason="the text extra is not installed")

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            config = transformers.BertConfig(
                vocab_size=30,
                hidden_size=8,
                num_hidden_layers=1,
                num_attention_heads=2,
                intermediate_size=16,
                max_position_embeddings=12,
                hidden_dropout_prob=0.0,
                attention_probs_dropout_prob=0.0,
            )
            self.bert = transformers.BertModel(config, add_pooling_layer=False)
            self.out = nn.Linear(8, 3)

        def forward(self, tokens):
            return self.out(self.bert(input_ids=tokens).last_hidden_state[:, 0])

    torch.manual_seed(6)
    model = Classifier().double()
    tokens, y = torch.randint(1, 30, (12, 6)), torch.randint(0, 3, (12,))
    _no_fallback(monkeypatch)  # position embeddings included: every layer of the encoder has its rule
    result = exact_fisher_diagonal(model, tokens, y, batch_size=5)
    _assert_equal(result, per_sample_fisher_loop(model, tokens, y), tol=1e-6)
    assert "bert.embeddings.word_embeddings.weight" in result


def test_tied_weights_get_both_modules_per_sample_gradients():
    # a language model's decoder sharing its embedding table (the ENAS recurrent supernet ties them), and two
    # Linear maps sharing one weight: each sample's gradient on the shared tensor is the sum of both uses
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(9, 5)
            self.first = nn.Linear(5, 5)
            self.second = nn.Linear(5, 5)
            self.second.weight = self.first.weight
            self.decoder = nn.Linear(5, 9)
            self.decoder.weight = self.embed.weight

        def forward(self, tokens):
            h = torch.tanh(self.second(torch.tanh(self.first(self.embed(tokens)))))
            return self.decoder(h.mean(1))

    torch.manual_seed(7)
    model = Tied().double()
    tokens, y = torch.randint(0, 9, (20, 4)), torch.randint(0, 9, (20,))
    result = exact_fisher_diagonal(model, tokens, y, batch_size=6)
    _assert_equal(result, per_sample_fisher_loop(model, tokens, y))
    assert {"embed.weight", "first.weight"} <= result.keys()


class _Recurrent(nn.Module):
    """A GRU or LSTM (layers, directions, batch_first as given) and a head on its mean output over the steps (the
    last step alone would leave the reverse direction's W_hh without a gradient)."""

    def __init__(self, kind: str, batch_first: bool, bidirectional: bool, layers: int):
        super().__init__()
        self.batch_first = batch_first
        self.rnn = getattr(nn, kind)(5, 6, num_layers=layers, batch_first=batch_first, bidirectional=bidirectional)
        self.head = nn.Linear(6 * (2 if bidirectional else 1), 3)

    def forward(self, x):
        out, _ = self.rnn(x if self.batch_first else x.transpose(0, 1))
        return self.head(out.mean(1 if self.batch_first else 0))


@pytest.mark.parametrize("kind", ["GRU", "LSTM"])
@pytest.mark.parametrize("batch_first, bidirectional, layers", [(True, False, 1), (False, True, 2), (True, True, 2)])
def test_recurrent_layers_unrolled_match_the_loop_without_the_fallback(
    monkeypatch, kind, batch_first, bidirectional, layers
):
    """GRU / LSTM weights used to take the torch.func fallback (3.3-4.8x naive's train time for EWC / WPL on a GRU);
    unrolled into their Linear maps they take the Linear rule, exact to float64 rounding."""
    from forgetbench.strategies import importance

    def no_fallback(*args, **kwargs):
        raise AssertionError("a recurrent layer took the fallback")

    monkeypatch.setattr(importance, "_vmap_squared_grads", no_fallback)
    torch.manual_seed(0)
    model = _Recurrent(kind, batch_first, bidirectional, layers).double()
    x, y = torch.randn(24, 7, 5, dtype=torch.float64), torch.randint(0, 3, (24,))
    fast = exact_fisher_diagonal(model, x, y, batch_size=10)
    monkeypatch.undo()
    _assert_equal(fast, per_sample_fisher_loop(model, x, y), tol=1e-10)
    assert "forward" not in model.rnn.__dict__  # the unrolled forward is gone after the pass


def test_a_packed_sequence_is_declined_and_takes_the_fallback():
    from torch.nn.utils.rnn import pack_padded_sequence

    class Packed(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = nn.GRU(4, 5, batch_first=True), nn.Linear(5, 2)

        def forward(self, x):
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
            _, h = self.rnn(pack_padded_sequence(x, lengths, batch_first=True))
            return self.head(h[-1])

    torch.manual_seed(1)
    model = Packed().double()
    x, y = torch.randn(12, 5, 4, dtype=torch.float64), torch.randint(0, 2, (12,))
    _assert_equal(exact_fisher_diagonal(model, x, y), per_sample_fisher_loop(model, x, y), tol=1e-10)
