"""How much work the demo's stages do, and what each stage reports."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DemoSettings:
    """How much work each stage does; the defaults finish in about a minute on 2 cores."""

    labels_per_class: int = 10
    source_epochs: int = 30
    target_epochs: int = 150
    fine_tune_epochs: int = 75
    distill_epochs: int = 40
    qat_epochs: int = 5
    adapt_epochs: int = 30
    source_limit: int = None
    batch_size: int = 64
    seed: int = 0
    verbose: object = "auto"


@dataclasses.dataclass(frozen=True)
class StageResult:
    """One row of the demo table."""

    stage: str
    evaluated_on: str
    accuracy: float
    parameters: int = None
    file_bytes: int = None
    agreement: float = None
    seconds: float = None


def default_settings(data):
    """Settings that keep the demo short on 2 CPU cores for each dataset."""
    if data == "fashion_mnist":
        return DemoSettings(
            labels_per_class=10,
            source_epochs=3,
            target_epochs=150,
            fine_tune_epochs=75,
            distill_epochs=5,
            qat_epochs=1,
            adapt_epochs=3,
            source_limit=15000,
            batch_size=128,
        )
    return DemoSettings()
