"""EMA of weights: a hand-iterated average, convergence to constant weights, buffers and state round trip."""

import io
import pickle

import pytest
import torch

from ddpm_helpers.training.ema import EMA


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))


def _set_all(model, value):
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


@pytest.mark.parametrize("warmup", [False, True])
def test_matches_hand_iterated_average(warmup):
    model = _net()
    ema = EMA(model, decay=0.9, warmup=warmup)
    start = model[0].weight[0, 0].item()
    expected = start
    for n, value in enumerate([1.0, -2.0, 0.5, 3.0, 3.0, -1.0], start=1):
        _set_all(model, value)
        ema.update(model)
        d = min(0.9, (1 + n) / (10 + n)) if warmup else 0.9
        expected = d * expected + (1 - d) * value
        assert ema.model[0].weight[0, 0].item() == pytest.approx(expected, rel=1e-6)


def test_converges_to_constant_weights():
    model = _net()
    ema = EMA(model, decay=0.98)
    _set_all(model, 0.25)
    for _ in range(1000):  # 0.98^1000 ≈ 2e-9: the initial weights are forgotten
        ema.update(model)
    for p in ema.model.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.25))


def test_averaged_copy_is_frozen_and_independent():
    model = _net().train()
    ema = EMA(model)
    assert not ema.model.training
    assert all(not p.requires_grad for p in ema.model.parameters())
    before = ema.model[0].weight.clone()
    _set_all(model, 5.0)
    assert torch.equal(ema.model[0].weight, before)  # nothing moves until update()


def test_float_buffers_are_averaged_and_counters_copied():
    model = _net().train()
    ema = EMA(model, decay=0.5, warmup=False)
    model(torch.randn(16, 3) + 3.0)  # moves BatchNorm running statistics and increments its counter
    ema.update(model)
    bn, ema_bn = model[1], ema.model[1]
    torch.testing.assert_close(ema_bn.running_mean, 0.5 * torch.zeros(4) + 0.5 * bn.running_mean)
    assert ema_bn.num_batches_tracked.item() == bn.num_batches_tracked.item() == 1


def test_state_dict_round_trip_with_weights_only_load():
    model = _net()
    ema = EMA(model, decay=0.95)
    _set_all(model, 1.0)
    for _ in range(3):
        ema.update(model)
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = EMA(_net(), decay=0.5, warmup=False)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.decay, restored.warmup, restored.num_updates) == (0.95, True, 3)
    for a, b in zip(restored.model.parameters(), ema.model.parameters()):
        assert torch.equal(a, b)
    assert restored.current_decay() == ema.current_decay()


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, float("nan"), True, "0.9", None])
def test_bad_decay_raises(decay):
    with pytest.raises(ValueError, match=f"decay={decay!r}"):
        EMA(_net(), decay=decay)


def test_mismatched_model_raises():
    ema = EMA(_net())
    with pytest.raises(ValueError, match="differing entries"):
        ema.update(torch.nn.Linear(3, 1))


def _loop_update(ema_model, model, d):
    """The update as it was before the foreach version: two state dicts and one lerp_ per tensor."""
    ema_state, state = ema_model.state_dict(), model.state_dict()
    for name, ema_value in ema_state.items():
        value = state[name].detach().to(ema_value.device)
        if ema_value.dtype.is_floating_point:
            ema_value.lerp_(value.to(ema_value.dtype), 1.0 - d)
        else:
            ema_value.copy_(value)


def _small_unet():
    from ddpm_helpers.nn.unet import UNet

    torch.manual_seed(0)
    return UNet(1, base_channels=8, channel_mults=(1, 2), attention_resolutions=(14,), image_size=28, num_classes=10)


@pytest.mark.parametrize("make", [_small_unet, _net], ids=["unet", "batchnorm"])
def test_foreach_update_equals_the_per_tensor_loop(make):
    model = make().train()
    ema = EMA(model, decay=0.99)
    reference = EMA(model, decay=0.99)
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1 * torch.randn_like(p))  # a "training step"
            if isinstance(model, torch.nn.Sequential):
                model(torch.randn(8, 3, dtype=model[0].weight.dtype))  # moves the BatchNorm statistics and counter
        _loop_update(reference.model, model, reference.current_decay())
        reference.num_updates += 1
        ema.update(model)
        if step == 3:
            model.double()  # moved after the lists were made: listed again, converted to the copy's dtype
    for (name, a), b in zip(ema.model.state_dict().items(), reference.model.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name


def test_shape_mismatch_and_tied_weights():
    ema = EMA(torch.nn.Linear(3, 2))
    with pytest.raises(ValueError, match=r"weight has shape \(4, 3\), the copy \(2, 3\)"):
        ema.update(torch.nn.Linear(3, 4))
    tied = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
    tied[1].weight = tied[0].weight
    ema = EMA(tied, decay=0.5, warmup=False)
    start = ema.model[0].weight.clone()
    _set_all(tied, 1.0)
    ema.update(tied)
    assert ema.model[1].weight is ema.model[0].weight  # still tied in the copy, and averaged once
    torch.testing.assert_close(ema.model[0].weight, 0.5 * start + 0.5)


def test_update_follows_a_model_replaced_or_reloaded():
    model, other = _net(), _net()
    ema = EMA(model, decay=0.5, warmup=False)
    ema.update(model)
    _set_all(other, 2.0)
    expected = 0.5 * ema.model[0].weight + 1.0
    ema.update(other)  # another model object of the same layout: listed again
    torch.testing.assert_close(ema.model[0].weight, expected)
    ema.load_state_dict(EMA(_net(), decay=0.5, warmup=False).state_dict())
    ema.update(other)
    torch.testing.assert_close(ema.model[0].weight, 0.5 * _net()[0].weight + 1.0)
    copied = pickle.loads(pickle.dumps(ema))  # the cache of weak references is not pickled
    copied.update(other)
    assert copied.num_updates == ema.num_updates + 1
