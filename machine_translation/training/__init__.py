"""Training: the tasks (translation, language model), the loss, the trainer loop, run
checkpoints and averaging, the run directory of `mt train`, torchrun, and the training
curve. Inference never imports this group."""
