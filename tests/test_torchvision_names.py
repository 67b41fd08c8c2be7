"""torchvision's ResNet state dicts load into ours unchanged (strict) and give the same logits.

Skipped, with the reason, where torchvision is not installed (it is not a dependency of lrbench).
"""

from __future__ import annotations

import pytest
import torch

from lrbench.models import lrnet50, resnet50, resnet101

torchvision_models = pytest.importorskip(
    "torchvision.models", reason="torchvision is not installed (pip install torchvision)")


@pytest.mark.parametrize(("ours", "theirs"), [(resnet50, "resnet50"), (resnet101, "resnet101")])
def test_torchvision_state_dict_loads_strictly_with_identical_logits(ours, theirs):
    torch.manual_seed(0)
    reference = getattr(torchvision_models, theirs)(weights=None).eval()
    with torch.no_grad():  # non-trivial BN statistics, so a misplaced tensor would show
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
    model = ours().eval()
    assert list(model.state_dict()) == list(reference.state_dict())  # same names, same order
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


def test_lrnet_stem_and_stages_use_the_same_names():
    names = set(lrnet50(impl="unfold").state_dict())
    resnet = set(resnet50().state_dict())
    shared = {"bn1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer1.0.bn2.weight",
              "layer4.2.conv3.weight", "layer1.0.downsample.0.weight", "fc.weight"}
    assert shared <= names & resnet
    assert "conv1.0.weight" in names and "conv1.3.final.weight" in names  # 1x1, then the LR layer
