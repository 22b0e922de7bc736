"""Training loops: text-prior pretraining (``speechbraid.training.pretrain_lm``) and the speech LLM stages."""
