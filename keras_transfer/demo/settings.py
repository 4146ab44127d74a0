"""How much work the demo's stages do, and what each stage reports."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How much work each stage does; the defaults finish in about a minute on 2 cores.

    Epochs over the few target labels (`target_epochs`, `head_epochs`,
    `fine_tune_epochs`) count passes over those labels repeated to at least
    `batch_size * 10` images, so that an epoch is ten steps, not one.
    """

    labels_per_class: int = 5
    source_epochs: int = 30
    adapt_epochs: int = 30
    target_epochs: int = 15
    head_epochs: int = 2
    fine_tune_epochs: int = 6
    distill_epochs: int = 60
    qat_epochs: int = 5
    images_per_domain: int = None
    batch_size: int = 64
    seed: int = 0
    verbose: object = "auto"


MATCH_POINTS = 0.005
MATCH_AGREEMENT = 0.99


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One row of the demo table.

    `baseline` names the row it is measured against and `claim` what it must
    show there: "beats" (higher accuracy), "matches" (at most `MATCH_POINTS`
    below its accuracy, and at least `MATCH_AGREEMENT` agreement) or "at least"
    (no lower).
    """

    stage: str
    evaluated_on: str
    accuracy: float
    baseline: str = None
    claim: str = None
    parameters: int = None
    file_bytes: int = None
    agreement: float = None
    seconds: float = None


def default_settings(data):
    """Settings that keep the demo short on 2 CPU cores for each dataset."""
    if data == "fashion_mnist":
        return DemoSettings(
            source_epochs=10,
            adapt_epochs=10,
            distill_epochs=5,
            qat_epochs=1,
            images_per_domain=6000,
            batch_size=128,
        )
    return DemoSettings()
