"""The sequence model on tiny models (pure torch, no Spark): masking, padding, learning, checkpoints."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from udfs import seqrec as sq

N_ITEMS, LM_DIM = 30, 8


def _lm(seed: int = 0, n: int = N_ITEMS, dim: int = LM_DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = np.zeros((n + 1, dim), dtype=np.float32)
    v[1:] = rng.normal(size=(n, dim))
    v[1:] /= np.linalg.norm(v[1:], axis=1, keepdims=True)
    return v


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = sq.SeqRecConfig(n_items=kw.pop("n_items", N_ITEMS), lm_dim=LM_DIM, dim=16, heads=2, layers=2, max_len=8,
                          dropout=0.0, **kw)
    return sq.build_model(cfg, _lm(seed, cfg.n_items) if cfg.use_text else None).eval()


def _planted(users: int = 300, seed: int = 1) -> list[list[int]]:
    """Sequences where the next item is (item mod N) + 1 nine times in ten."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(users):
        s = [int(rng.integers(1, N_ITEMS + 1))]
        for _ in range(int(rng.integers(4, 12))):
            s.append(s[-1] % N_ITEMS + 1 if rng.random() < 0.9 else int(rng.integers(1, N_ITEMS + 1)))
        out.append(s)
    return out


def test_output_at_a_position_does_not_see_later_items():
    model = _model()
    a = torch.tensor([[3, 7, 1, 9, 4, 2, 8, 5]])
    b = a.clone()
    b[0, 5:] = torch.tensor([11, 12, 13])
    with torch.no_grad():
        ha, hb = model(a), model(b)
    assert torch.allclose(ha[0, :5], hb[0, :5], atol=1e-6)
    assert not torch.allclose(ha[0, 5:], hb[0, 5:], atol=1e-3)


def test_padding_in_front_changes_nothing():
    model = _model()
    short = torch.tensor([[4, 9, 2]])
    padded = torch.tensor([[0, 0, 0, 0, 0, 4, 9, 2]])
    with torch.no_grad():
        v1, a1 = model.user_vectors(short)
        v2, a2 = model.user_vectors(padded)
    assert torch.allclose(v1, v2, atol=1e-5)
    assert int(a1) + 5 == int(a2)              # the same item, five columns further right
    # and a batch mixing lengths gives each row what it gets alone
    batch = torch.tensor(sq.left_pad([[4, 9, 2], [5, 6, 7, 8, 1, 2]], 8))
    with torch.no_grad():
        vb, _ = model.user_vectors(batch)
        v_other, _ = model.user_vectors(torch.tensor([[5, 6, 7, 8, 1, 2]]))
    assert torch.allclose(vb[0], v1[0], atol=1e-5) and torch.allclose(vb[1], v_other[0], atol=1e-5)


@pytest.mark.parametrize("use_text", [True, False])
def test_an_untrained_model_already_tells_users_apart_by_their_items(use_text):
    """Item and position embeddings start at one scale: at the default width, and with
    384-dimensional text vectors, the positions do not drown the items before the layer norm (at
    torch's default N(0, 1) positions every user got nearly the same vector, cosine 0.97 to 1.0)."""
    torch.manual_seed(0)
    n, lm_dim = 200, 384
    cfg = sq.SeqRecConfig(n_items=n, lm_dim=lm_dim if use_text else 0, use_text=use_text, dropout=0.0)
    model = sq.build_model(cfg, _lm(0, n, lm_dim) if use_text else None).eval()
    histories = torch.as_tensor(np.random.default_rng(1).integers(1, n + 1, size=(64, 10)))
    with torch.no_grad():
        vectors, _ = model.user_vectors(histories)
    unit = torch.nn.functional.normalize(vectors, dim=1)
    cosine = (unit @ unit.T)[~torch.eye(64, dtype=torch.bool)]
    assert float(cosine.mean()) < 0.75, float(cosine.mean())
    assert float(model.pos.weight.detach().std()) == pytest.approx(sq.INIT_STD, rel=0.2)


@pytest.mark.parametrize("full_softmax_max_items", [10_000, 5])     # full cross-entropy, sampled softmax
def test_the_loss_falls_and_the_planted_rule_is_learned(full_softmax_max_items):
    model = _model().train()
    ex = sq.make_examples(_planted(), 8)
    settings = sq.TrainSettings(epochs=25, patience=25, batch_size=64, lr=5e-3, mask_seen=False, negatives=10,
                                full_softmax_max_items=full_softmax_max_items)
    before = sq.rank_metrics(model, ex.val_inputs, ex.val_targets, False)
    result = sq.train(model, ex, settings)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0], losses
    after = sq.rank_metrics(model, ex.val_inputs, ex.val_targets, False)
    assert after["hits"] / after["n"] >= 0.8 > before["hits"] / before["n"], (before, after)
    assert result.val_recall == pytest.approx(max(h["val_recall"] for h in result.history if
                                                  h["val_ndcg"] == result.val_ndcg))


def test_training_is_deterministic_for_a_seed():
    ex = sq.make_examples(_planted(120), 8)
    settings = sq.TrainSettings(epochs=3, batch_size=32, seed=3)
    states = []
    for _ in range(2):
        model = _model(seed=2).train()
        sq.train(model, ex, settings)
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_seen_items_leave_the_softmax_but_the_target_stays():
    inputs = torch.tensor([[0, 3, 5, 3]])
    seen = sq.seen_mask(inputs, 6)
    assert seen[0, 1].nonzero().flatten().tolist() == [0, 3]
    assert seen[0, 3].nonzero().flatten().tolist() == [0, 3, 5]
    keep = torch.tensor([[False, True, False, True]])          # the rows of the positions trained on
    assert torch.equal(sq.seen_mask(inputs, 6, keep), seen[keep])
    ex = sq.make_examples([[1, 2, 3, 1, 4]], 4, validation=False)
    assert ex.targets.tolist() == [[2, 3, 1, 4]]
    model = _model().train()
    loss = sq.loss_of(model, torch.tensor(ex.inputs), torch.tensor(ex.targets), torch.tensor(ex.weight),
                      sq.TrainSettings(mask_seen=True))
    assert torch.isfinite(loss)                # item 1 is seen before it is the target again: kept


def test_examples_hold_out_the_last_item_and_weight_only_new_targets():
    ex = sq.make_examples([[1, 2, 3, 4, 5], [6, 7]], 3, first_new=[3, 0])
    assert ex.val_inputs.tolist() == [[2, 3, 4]] and ex.val_targets.tolist() == [5]
    assert ex.inputs.tolist() == [[1, 2, 3], [0, 0, 6]]
    assert ex.targets.tolist() == [[2, 3, 4], [0, 0, 7]]
    assert ex.weight.tolist() == [[0, 0, 1], [0, 0, 1]]     # targets 2 and 3 are before index 3


def test_a_long_history_trains_in_windows_of_max_len_up_to_the_history():
    seq = list(range(1, 12))                                    # 11 items: 10 training, 11 held out
    one = sq.make_examples([seq], 3)                            # history = max_len: the newest window
    assert one.targets.tolist() == [[8, 9, 10]] and one.inputs.tolist() == [[7, 8, 9]]
    ex = sq.make_examples([seq], 3, history=8)
    # the newest 8 targets (3..10) in windows of 3 from the newest back, inputs one step behind
    assert ex.targets.tolist() == [[8, 9, 10], [5, 6, 7], [0, 3, 4]]
    assert ex.inputs.tolist() == [[7, 8, 9], [4, 5, 6], [0, 2, 3]]
    assert ex.positions == 8 and ex.val_targets.tolist() == [11]
    every = sq.make_examples([seq], 3, history=100)             # every target, 2..10
    assert sorted(int(t) for t in every.targets[every.weight > 0]) == list(range(2, 11))
    # a warm start counts the targets from index 6 on (items 7..10) and drops windows without one
    warm = sq.make_examples([seq], 3, first_new=[6], history=100)
    assert warm.targets.tolist() == [[8, 9, 10], [5, 6, 7]] and warm.weight.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_each_target_keeps_its_time_through_the_windows():
    seq = list(range(1, 12))
    times = [100 * i for i in seq]
    ex = sq.make_examples([seq], 3, history=8, times=[times])
    assert ex.target_times.tolist() == [[800, 900, 1000], [500, 600, 700], [0, 300, 400]]
    assert sq.make_examples([seq], 3).target_times is None
    with pytest.raises(ValueError, match="11 items but 10 times"):
        sq.make_examples([seq], 3, times=[times[:-1]])


@pytest.mark.parametrize("full_softmax_max_items", [10_000, 5])     # full cross-entropy, sampled softmax
def test_an_item_is_no_negative_before_it_first_appeared(full_softmax_max_items):
    """Item 30 first appears after every target of the batch: it leaves their softmax, so nothing
    pushes its ID vector (zero at the start, the text places it); item 29, there from the start,
    is pushed as every negative is."""
    seqs = [s for s in _planted(60) if 29 not in s and 30 not in s]
    ex = sq.make_examples(seqs, 8, validation=False, times=[[10 * (j + 1) for j in range(len(s))] for s in seqs])
    available = np.zeros(N_ITEMS + 1, dtype=np.int64)
    available[30] = 10**6
    settings = sq.TrainSettings(mask_seen=True, negatives=N_ITEMS * 4, full_softmax_max_items=full_softmax_max_items)
    args = [torch.tensor(a) for a in (ex.inputs, ex.targets, ex.weight)]
    grads = {}
    for masked in (True, False):
        model = _model(id_embeddings=True).train()
        when = (torch.tensor(ex.target_times), torch.tensor(available)) if masked else (None, None)
        torch.manual_seed(0)
        sq.loss_of(model, *args, settings, torch.Generator().manual_seed(1), *when).backward()
        grads[masked] = model.ids.weight.grad
    assert grads[True][30].abs().max() == 0 and grads[False][30].abs().max() > 0
    assert grads[True][29].abs().max() > 0
    # training with the items' first appearances moves item 30's ID vector not at all
    model = _model(id_embeddings=True).train()
    sq.train(model, ex, sq.TrainSettings(epochs=2, batch_size=32, mask_unavailable=True,
                                         full_softmax_max_items=full_softmax_max_items), available=available)
    assert model.ids.weight[30].abs().max() == 0 and model.ids.weight[29].abs().max() > 0


def test_a_saved_model_loads_and_scores_identically(tmp_path):
    model = _model()
    ids = [f"i{k}" for k in range(N_ITEMS)]
    sq.save(str(tmp_path / "ckpt"), model, ids, {"ds": "2026-06-30"})
    loaded, loaded_ids, meta = sq.load(str(tmp_path / "ckpt"))
    assert loaded_ids == ids and meta["ds"] == "2026-06-30"
    seqs = sq.left_pad([[1, 2, 3], [7, 8, 9, 10, 11, 12, 13, 14, 15]], 8)
    (v1, a1), = list(sq.score_users(model, seqs))
    (v2, a2), = list(sq.score_users(loaded, seqs))
    np.testing.assert_array_equal(v1, v2)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(sq.item_matrix(model), sq.item_matrix(loaded))


def test_warm_start_resumes_from_the_checkpoint_with_a_grown_catalogue(tmp_path):
    model = _model(id_embeddings=True).train()
    ex = sq.make_examples(_planted(), 8)
    sq.train(model, ex, sq.TrainSettings(epochs=10, batch_size=64, lr=5e-3, mask_seen=False))
    trained = sq.rank_metrics(model, ex.val_inputs, ex.val_targets, False)
    old_ids = [f"i{k}" for k in range(N_ITEMS)]
    sq.save(str(tmp_path / "old"), model, old_ids)
    old, _, _ = sq.load(str(tmp_path / "old"))
    # a new item at the front of the vocabulary shifts every index by one
    new_ids = ["a-new", *old_ids]
    fresh = _model(seed=9, n_items=N_ITEMS + 1, id_embeddings=True)
    fresh.load_state_dict(sq.warm_state(old.state_dict(), old_ids, fresh, new_ids))
    assert torch.equal(fresh.ids.weight[2:], old.ids.weight[1:])
    assert torch.equal(fresh.proj.weight, old.proj.weight)
    shifted = sq.make_examples([[i + 1 for i in s] for s in _planted()], 8)
    # lm vectors follow the new vocabulary too
    with torch.no_grad():
        fresh.lm[2:] = old.lm[1:]
    resumed = sq.rank_metrics(fresh, shifted.val_inputs, shifted.val_targets, False)
    cold = sq.rank_metrics(_model(seed=9, n_items=N_ITEMS + 1, id_embeddings=True), shifted.val_inputs,
                           shifted.val_targets, False)
    assert resumed["hits"] == pytest.approx(trained["hits"])
    assert resumed["hits"] > 2 * cold["hits"]


def test_hashed_ids_are_stable_and_within_the_buckets():
    rows = sq.id_rows(["a", "b", "c", "a"], 2)
    assert rows[0] == 0 and set(rows[1:]) <= {1, 2} and rows[1] == rows[4]
    assert sq.id_rows(["a", "b"], 0).tolist() == [0, 1, 2]
    model = _model(id_embeddings=True, use_text=False, id_buckets=7)
    assert model.ids.weight.shape[0] == 8


def test_a_model_without_any_item_input_is_refused():
    with pytest.raises(ValueError, match="use_text and id_embeddings"):
        sq.SeqRecConfig(n_items=3, lm_dim=4, use_text=False, id_embeddings=False)


def _groups_with_an_unseen_item(seed: int = 0):
    """``(lm, examples, held-out rows whose target never occurs in training)``: six groups of ten
    items whose language-model vectors say their group; users move within a group, and each
    group's tenth item never occurs in training but is 30% of the held-out next items."""
    groups, per = 6, 10
    n = groups * per
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(groups, LM_DIM))
    lm = np.zeros((n + 1, LM_DIM), dtype=np.float32)
    for i in range(n):
        lm[i + 1] = centres[i // per] + 0.3 * rng.normal(size=LM_DIM)
    lm[1:] /= np.linalg.norm(lm[1:], axis=1, keepdims=True)
    unseen = [g * per + per for g in range(groups)]
    seqs = []
    for _ in range(300):
        g, s = int(rng.integers(groups)), []
        for _ in range(int(rng.integers(5, 12))):
            g = int(rng.integers(groups)) if rng.random() < 0.15 else g
            s.append(g * per + int(rng.integers(1, per)))
        s.append(g * per + per if rng.random() < 0.3 else g * per + int(rng.integers(1, per)))
        seqs.append(s)
    ex = sq.make_examples(seqs, 8)
    new = np.isin(ex.val_targets, unseen)
    assert new.sum() >= 60 and not np.isin(ex.targets[ex.weight > 0], unseen).any()
    return lm, ex, new


def _unseen_hits(lm, ex, new, seed: int = 0, **kw) -> tuple[float, float]:
    """Hit rate@10 of the held-out items never trained on, and of the others, after the same training."""
    text = kw.get("use_text", True)
    torch.manual_seed(seed)
    cfg = sq.SeqRecConfig(n_items=len(lm) - 1, lm_dim=LM_DIM if text else 0, dim=16, heads=2, layers=1, max_len=8,
                          dropout=0.0, id_embeddings=True, **kw)
    model = sq.build_model(cfg, lm if text else None).train()
    sq.train(model, ex, sq.TrainSettings(epochs=10, patience=10, batch_size=64, lr=5e-3, mask_seen=False, seed=seed))
    model.eval()
    cold = sq.rank_metrics(model, ex.val_inputs[new], ex.val_targets[new], False)
    warm = sq.rank_metrics(model, ex.val_inputs[~new], ex.val_targets[~new], False)
    return cold["hits"] / cold["n"], warm["hits"] / warm["n"]


def test_text_gives_an_item_without_history_a_place_the_ids_alone_cannot():
    """With the text input the model ranks an item it never trained on among the top 10 often;
    with ID embeddings alone (the same training) it cannot: its row was never a target."""
    lm, ex, new = _groups_with_an_unseen_item()
    with_text, _ = _unseen_hits(lm, ex, new, use_text=True)
    ids_only, _ = _unseen_hits(lm, ex, new, use_text=False)
    assert with_text >= 0.1 and with_text > 3 * ids_only, (with_text, ids_only)


def test_id_dropout_leaves_an_item_its_text_alone_in_training_only():
    """In training each pass over the item table (a batch's inputs or its output matrix) makes an
    item, with chance id_dropout, its text projection alone; in evaluation (serving) always the
    text plus the ID vector."""
    model = _model(id_dropout=0.5)
    with torch.no_grad():
        model.ids.weight.normal_()
        model.ids.weight[sq.PAD].zero_()
        text = model.proj(model.lm)
        full = model.items()
    model.train()
    with torch.no_grad():
        draws = torch.stack([model.items() for _ in range(200)])           # (200, n + 1, dim)
    alone = torch.isclose(draws, text.expand_as(draws), atol=1e-6).all(-1)[:, 1:]
    both = torch.isclose(draws, full.expand_as(draws), atol=1e-6).all(-1)[:, 1:]
    assert bool((alone | both).all())                                    # nothing in between
    assert 0.4 < float(alone.float().mean()) < 0.6                         # half of the uses
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.items(), full)
    with pytest.raises(ValueError, match="id_dropout"):
        sq.SeqRecConfig(n_items=3, lm_dim=LM_DIM, id_dropout=1.0)
