"""The <CALL> trainer (`trainer.train`), its data stream, objectives, evaluation and cascade
generation with a bigger model, and the pieces to train on lacy labels with other tools:

    from trainer import LacyLoss, LacyWindows, collate, add_call_token, GroundTruthBudget
    from trainer import TrainConfig, Trainer, build_slm, load_checkpoint

`LacyWindows` packs rows of a labelled dataset into training windows, `collate` turns windows
into tensors, `LacyLoss` is any objective as a loss (`transformers.Trainer`'s
`compute_loss_func`, or a plain loop), `add_call_token` gives any Hugging Face tokenizer and
model the `<CALL>` token, `GroundTruthBudget` logs the paper's accounting in a Trainer;
`Trainer(TrainConfig(...)).fit()` is lacy-train (a `FitResult`), `build_slm` the SLM it trains
and `load_checkpoint` a trained one.
Imported on first use, so `import trainer` stays light."""

from lacy_labels.lazy import lazy_exports

_API = {
    "LacyLoss": "trainer.objectives",
    "compute_loss": "trainer.objectives",
    "LacyWindows": "trainer.packing",
    "collate": "trainer.packing",
    "Packer": "trainer.packing",
    "Trainer": "trainer.train",
    "TrainConfig": "trainer.config",
    "FitResult": "trainer.train",
    "SLM": "trainer.model",
    "build_slm": "trainer.model",
    "load_checkpoint": "trainer.checkpoint",
    "add_call_token": "trainer.model",
    "build_model": "trainer.model",
    "call_id": "trainer.model",
    "load_pretrained_slm": "trainer.model",
    "load_slm_tokenizer": "trainer.model",
    "separator_id": "trainer.model",
    "GroundTruthBudget": "trainer.callbacks",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_exports(__name__, _API)
